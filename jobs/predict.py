"""Ray job entrypoint: tag photos with an exported bundle (the arguments of `exifray predict`).

    ray job submit --working-dir . -- python jobs/predict.py s3://bucket/models/best s3://bucket/inbox/ \
        --out s3://bucket/tags.jsonl --concurrency 2

The job joins the cluster it was submitted to (RAY_ADDRESS): decoding runs as Ray Data tasks across its nodes,
the model in `--concurrency` actors (one GPU each when the cluster has GPUs). Inputs and the output file should be
on storage every node can read (S3, a shared mount).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from exifray.cli import main as cli

    return cli(["predict", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
