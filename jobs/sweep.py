"""Ray job entrypoint: a hyperparameter sweep on the cluster the job was submitted to (`exifray sweep` arguments).

    ray job submit --working-dir . -- python jobs/sweep.py --space search_spaces/fusion.yaml \\
        --data /mnt/shared/dataset --storage-path s3://bucket/experiments
    ray job submit --working-dir . -- python jobs/sweep.py --smoke-test [--out DIR] [--space FILE]

The driver joins the cluster in RAY_ADDRESS (set by `ray job submit`); trials get the per-trial CPUs and
GPUs the search space asks for, and wait for the autoscaler when the cluster is short of them.
`--smoke-test` makes its own 120-photo synthetic dataset and runs the space's `--smoke-test` (one tiny
trial; a GPU when the cluster has one) with results under `--out` (default: a fresh temporary folder).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from exifray.cli import main as cli
    from exifray.testing.smoke import option, smoke_arguments, smoke_dataset

    if "--smoke-test" not in argv:
        return cli(["sweep", *argv])
    out = smoke_arguments(argv, "sweep")
    print(f"sweep smoke test: writing to {out}", flush=True)
    dataset = smoke_dataset(out)
    space = option(argv, "--space") or "search_spaces/demo.yaml"
    return cli(["sweep", "--space", space, "--data", str(dataset), "--storage-path", str(out / "experiments"),
                "--smoke-test", "--name", "smoke"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
