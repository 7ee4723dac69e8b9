"""Ray job entrypoint: decode CRAWL DIRs into a Parquet DATASET DIR with Ray Data (the arguments of `exifray ingest`).

    ray job submit --working-dir . -- python jobs/ingest.py s3://bucket/crawl --out s3://bucket/dataset --sizes 50,150
    ray job submit --working-dir . -- python jobs/ingest.py --smoke-test [--out DIR]

The job joins the cluster it was submitted to (RAY_ADDRESS) and spreads decoding over its CPUs; inputs and
`--out` must be storage every node reaches: object storage (`s3://`, endpoint and credentials in the
environment, e.g. the runtime env's `env_vars`) or a shared mount. `--smoke-test` renders 120 synthetic photos and
ingests them at 32 px into `--out` (default: a fresh temporary folder), in well under a minute on 2 CPUs.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from exifray.cli import main as cli
    from exifray.testing.smoke import smoke_arguments, smoke_crawl

    if "--smoke-test" not in argv:
        return cli(["ingest", *argv])
    out = smoke_arguments(argv, "ingest")
    print(f"ingest smoke test: writing to {out}", flush=True)
    crawl = smoke_crawl(out, photos=120)
    return cli(["ingest", str(crawl), "--out", str(out / "dataset"), "--sizes", "32"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
