"""Benchmark: what MLflow tracking costs a sweep, with the server up and with it killed mid-sweep.

    python jobs/bench_tracking.py                       # 8 trials of TestTinyCNN exif/fusion, 3 epochs, 2 at a time
    python jobs/bench_tracking.py --trials 16 --repeats 3
    ray job submit --working-dir . -- python jobs/bench_tracking.py --smoke-test

Three sweeps of the same space and seed (so the same trials), each run `--repeats` times, interleaved:
1. baseline: no tracking;
2. tracked: `--mlflow` against a real `mlflow server` (sqlite, local artifacts) on 127.0.0.1, up all along;
3. server killed: the same, with the server's process group killed when the first trial completes.
Prints each one's median wall time, its ratio to the baseline, the driver's own time on tracking
(`SweepResult.tracking_s`), whether every trial completed, and the CPU seconds the server used during the sweep
(it shares the machine's cores with the trials here). The target for 3 is at most 1.1x of 2.
Needs the server's venv: `make mlflow-server` (or EXIFRAY_MLFLOW_SERVER naming an `mlflow` executable).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke-test", action="store_true", help="2 trials of 1 epoch, once each")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.smoke_test:
        args.trials, args.epochs, args.photos, args.repeats = 2, 1, 120, 1

    import ray

    from exifray import schema
    from exifray.api import load_space, run_sweep
    from exifray.testing.datasets import make_dataset
    from exifray.testing.mlflow_server import KillServerAfterFirstTrial, mlflow_server

    space = {"name": "bench", "seed": 7, "num_samples": args.trials, "max_concurrent": 2, "scheduler": "none",
             "resources": {"cpus": 1},
             "fixed": {"backbone": "TestTinyCNN", "epochs": args.epochs, "batch_size": 32},
             "params": {"modality": {"choice": ["exif", "fusion"]}, "learning_rate": {"loguniform": [0.0005, 0.005]}}}
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    walls: dict[str, list[float]] = {"baseline": [], "tracked": [], "server killed": []}
    overhead: dict[str, list[float]] = {key: [] for key in walls}
    complete: dict[str, bool] = dict.fromkeys(walls, True)
    server_cpu: dict[str, list[float]] = {key: [] for key in walls}
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root / "data", photos=args.photos, image_size=48, sizes=(32,))
        for repeat in range(args.repeats):
            for kind in walls:
                name = f"{kind.replace(' ', '-')}-{repeat}"
                plan = load_space({**space, "name": name})
                if kind == "baseline":
                    result = run_sweep(plan, dataset, storage_path=str(root / "experiments"))
                else:
                    with mlflow_server(root / f"mlflow-{name}") as server:
                        callbacks = [KillServerAfterFirstTrial(server.process.pid)] if kind == "server killed" else []
                        before = _cpu_s(server.process.pid)
                        result = run_sweep(plan, dataset, storage_path=str(root / "experiments"), mlflow=server.uri,
                                           callbacks=callbacks)
                        if kind == "tracked":  # a killed server's CPU time is gone with it
                            server_cpu[kind].append(_cpu_s(server.process.pid) - before)
                walls[kind].append(result.wall_time_s)
                overhead[kind].append(result.tracking_s)
                board = result.leaderboard
                complete[kind] &= len(board) == args.trials and bool((board["status"] == schema.STATUS_COMPLETE).all())
    base = statistics.median(walls["baseline"])
    tracked = statistics.median(walls["tracked"])
    print(f"{args.trials} trials (TestTinyCNN exif/fusion, {args.epochs} epochs, 2 at a time), {args.photos} photos, "
          f"median of {args.repeats}")
    for kind, times in walls.items():
        wall = statistics.median(times)
        print(f"{kind:14s}: {wall:7.1f} s  ({wall / base:.2f}x baseline, {wall / tracked:.2f}x tracked)  "
              f"driver on tracking {statistics.median(overhead[kind]):.2f} s  every trial complete: {complete[kind]}"
              + (f"  server CPU {statistics.median(server_cpu[kind]):.1f} s" if server_cpu[kind] else ""))


def _cpu_s(pid: int) -> float:
    """CPU seconds of the server and its uvicorn workers so far (0 once it has been killed)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in processes)
    except psutil.Error:
        return 0.0


if __name__ == "__main__":
    main()
