"""Ray job entrypoint: the leaderboard tables and HTML report of an experiment (`exifray leaderboard` arguments).

    ray job submit --working-dir . -- python jobs/leaderboard.py s3://bucket/experiments/fusion \\
        --format csv,md,html --out s3://bucket/reports/fusion
    ray job submit --working-dir . -- python jobs/leaderboard.py --smoke-test [--out DIR]

`--smoke-test` makes a synthetic dataset, runs a two-trial sweep (one EXIF-only, one fusion) on the
cluster and writes its leaderboard in every format under `--out` (default: a fresh temporary folder).
"""

from __future__ import annotations

import sys

SMOKE_SPACE = """\
name: smoke
seed: 0
scheduler: none
max_concurrent: 2
resources: {cpus: 1}
fixed: {backbone: TestTinyCNN, weights: none, epochs: 1, batch_size: 32, exif_tags: [ExposureTime, FNumber, ISO]}
params:
  modality: {grid: [exif, fusion]}
"""


def main(argv: list[str]) -> int:
    from exifray.cli import main as cli
    from exifray.testing.smoke import smoke_arguments, smoke_dataset

    if "--smoke-test" not in argv:
        return cli(["leaderboard", *argv])
    out = smoke_arguments(argv, "leaderboard")
    print(f"leaderboard smoke test: writing to {out}", flush=True)
    dataset = smoke_dataset(out)
    (out / "smoke.yaml").write_text(SMOKE_SPACE)
    code = cli(["sweep", "--space", str(out / "smoke.yaml"), "--data", str(dataset), "--storage-path",
                str(out / "experiments")])
    if code:
        return code
    return cli(["leaderboard", str(out / "experiments" / "smoke"), "--format", "csv,md,html,json,parquet",
                "--out", str(out / "analysis")])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
