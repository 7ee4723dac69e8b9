"""Benchmark: a 200-trial TPE + ASHA sweep shaped like `search_spaces/fusion.yaml` on this machine, its wall time
against the work no cache can remove, and the same sweep's projected time with cold workers and no cache.

    python jobs/bench_sweep_200.py                     # 1,000 photos at 64/96 px, MobileNetV2 + EfficientNetB0
    python jobs/bench_sweep_200.py --worker-memory 50  # one warm worker through 50 mixed trials, never retired
    ray job submit --working-dir . -- python jobs/bench_sweep_200.py --smoke-test

The space: modality (image / EXIF / fusion) and, for the trials that use them, two backbones with local weights
files at 64 or 96 px, fine-tuned layers (0-20), EXIF tag subsets, fusion widths, learning rates, batch sizes and
dropout; 15 head epochs on cached features, 1 fine-tuning epoch (fusion.yaml's 10, cut so the run fits); ASHA as
in fusion.yaml (grace 3, reduction 3); 2 trials at a time on 1 CPU each, warm workers.

The floor is the work no cache removes: every fine-tuning epoch through the backbone plus the cache builds,
summed over trials and divided by the concurrency. Printed: the wall time, the floor and their ratio; where the
rest went (head epochs, EXIF epochs, what no epoch used); the workers (distinct pids, retirements); then a
sample of the same configurations run as before warm workers and the cache (cache off, a fresh worker per
trial) measures each (backbone, size)'s epoch through the backbone and a cold trial's fixed cost, and
projects the 200 trials' wall time from it.

`--worker-memory N`: N trials of the same space, one at a time on one worker that never retires, printing its
private memory (USS) when each trial began: what `worker_growth_mb` and `max_trials_per_worker` are set from.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BACKBONES = ["MobileNetV2", "EfficientNetB0"]
CONCURRENCY = 2


def _document(name: str, weights: dict[str, str], sizes: list[int], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": name, "seed": 0, "search": "tpe", "n_startup_trials": 20, "num_samples": args.trials,
        "max_concurrent": CONCURRENCY, "resources": {"cpus": 1}, "warm_workers": True,
        **({"max_trials_per_worker": args.max_trials_per_worker} if args.max_trials_per_worker else {}),
        "scheduler": {"type": "asha", "grace_period": 3, "reduction_factor": 3},
        "fixed": {"weights": weights, "epochs": args.epochs, "fine_tune_epochs": args.fine_tune_epochs,
                  "early_stopping_patience": 4},
        "params": {"modality": {"choice": ["image", "exif", "fusion"]},
                   "backbone": {"choice": list(weights)}, "image_size": {"choice": sizes},
                   "fine_tune_layers": {"randint": [0, 21]}, "exif_tags": {"subset_of": "all"},
                   "fusion_width": {"choice": [16, 32, 64, 128, 256]},
                   "learning_rate": {"loguniform": [0.0001, 0.01]}, "batch_size": {"choice": [32, 64]},
                   "dropout": {"uniform": [0.0, 0.5]}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=15, help="head epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--backbones", nargs=2, default=BACKBONES)
    parser.add_argument("--worker-memory", type=int, metavar="N", default=0,
                        help="instead: N trials on one worker that never retires, its memory per trial")
    parser.add_argument("--max-trials-per-worker", type=int, metavar="N", default=0,
                        help="the sweep's max_trials_per_worker (default: the project's)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="150 photos at 32 px, TestTinyCNN and TestTinyMobileNet, 12 trials of 4 head epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.sizes, args.backbones, args.epochs = 150, [32], ["TestTinyCNN", "TestTinyMobileNet"], 4
        args.trials = min(args.trials, 12) if not args.worker_memory else args.trials
        args.worker_memory = min(args.worker_memory, 6)

    import ray

    from exifray.testing.datasets import make_dataset, weights_files

    with tempfile.TemporaryDirectory(prefix="bench-sweep-200-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, photos=args.photos, image_size=max(args.sizes) + 16, sizes=tuple(args.sizes))
        weights = weights_files(root, args.backbones, max(args.sizes))
        if not ray.is_initialized():
            ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
        if args.worker_memory:
            _worker_memory(args, weights, dataset, root)
        else:
            _sweep_against_floor(args, weights, dataset, root)


def _sweep_against_floor(args: argparse.Namespace, weights: dict[str, str], dataset: Path, root: Path) -> None:
    from exifray.space_file import parse_sweep
    from exifray.sweep import run_sweep

    plan = parse_sweep(_document("sweep200", weights, args.sizes, args))
    started = time.perf_counter()
    result = run_sweep(plan, dataset, storage_path=str(root / "experiments"))
    wall = time.perf_counter() - started
    epochs = epoch_rows(result.experiment_dir)
    board = result.leaderboard
    builds = float(np.nansum(board["feature_build_s"].to_numpy(dtype=float)))
    through = epochs[epochs["phase"] == "fine_tune"]["epoch_time_s"].sum()
    floor = (through + builds) / CONCURRENCY
    print(f"{len(board)} trials ({(board['status'] == 'complete').sum()} complete), {len(epochs)} trial-epochs, "
          f"{int((board['feature_cache'] == 'built').sum())} pooled-feature entries built; {epochs['pid'].nunique()} "
          f"workers ({int(epochs['worker_retires'].fillna(False).astype(bool).groupby(epochs['pid']).any().sum())} "
          f"retired)", flush=True)
    print(_retirements(epochs, plan.config.max_trials_per_worker), flush=True)
    print(f"sweep wall time {wall:.0f} s; floor {floor:.0f} s (fine-tuning epochs {through:.0f} s + cache builds "
          f"{builds:.0f} s, over {CONCURRENCY} slots): {wall / floor:.2f}x the floor", flush=True)
    print(slot_seconds(epochs, board, wall, CONCURRENCY), flush=True)
    projected = _projected_cold(args, weights, dataset, root, board, epochs)
    print(f"projected with cold workers and no cache: {projected:.0f} s ({projected / wall:.1f}x this sweep)",
          flush=True)


def _retirements(epochs: Any, max_trials: int) -> str:
    """Why the sweep's workers retired (their trial count or their memory) and how far their memory grew."""
    per_worker = epochs.groupby("pid").agg(trials=("worker_trial", "max"), uss=("worker_uss_mb", "max"),
                                           retired=("worker_retires", lambda column: column.fillna(False).any()))
    # what the growth limit counts from: the worker's memory when its second trial began (after its first)
    second = epochs[epochs["worker_trial"] == 2].groupby("pid")["worker_uss_mb"].min()
    retired = per_worker[per_worker["retired"]]
    by_count = int((retired["trials"] >= max_trials).sum())
    growth = (per_worker["uss"] - second).dropna()
    return (f"  workers retired: {by_count} at max_trials_per_worker {max_trials}, "
            f"{len(retired) - by_count} by memory; "
            f"trials per worker median {per_worker['trials'].median():.0f}; private memory at most "
            f"{per_worker['uss'].max():.0f} MiB, grown at most {growth.max():.0f} MiB after a worker's first trial")


def epoch_rows(experiment: str) -> Any:
    """Every epoch report of every trial (Tune's per-trial results), with the trial's settings."""
    import pandas as pd
    from ray.tune import ExperimentAnalysis

    frames = []
    for trial in ExperimentAnalysis(experiment).trials:
        rows = pd.read_json(Path(trial.path) / "result.json", lines=True)  # the final report has no phase
        frame = rows[rows["phase"].notna()] if "phase" in rows else rows.iloc[0:0]
        frame = frame.assign(modality=trial.config.get("modality", "fusion"),
                             backbone=trial.config.get("backbone"), image_size=trial.config.get("image_size"))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def slot_seconds(epochs: Any, board: Any, wall: float, slots: int) -> str:
    """Where a sweep's slot-seconds (wall time x concurrency) went: fine-tuning epochs, cache builds, frozen-backbone
    epochs (through the backbone, or on cached features), EXIF-only epochs, and what no epoch used."""
    builds = float(np.nansum(board["feature_build_s"].to_numpy(dtype=float))) if "feature_build_s" in board else 0.0
    image = epochs[epochs["modality"] != "exif"]
    cached = image["feature_cache"].isin(["hit", "built"])  # each epoch reports its trial's outcome so far
    parts = {"fine-tuning epochs": image[image["phase"] == "fine_tune"]["epoch_time_s"].sum(),
             "cache builds": builds,
             "head epochs through the backbone": image[(image["phase"] != "fine_tune") & ~cached]["epoch_time_s"].sum(),
             "head epochs on cached features": image[(image["phase"] != "fine_tune") & cached]["epoch_time_s"].sum(),
             "EXIF-only epochs": epochs[epochs["modality"] == "exif"]["epoch_time_s"].sum()}
    rest = wall * slots - sum(parts.values())
    return (f"  of {wall * slots:.0f} slot-seconds: " + ", ".join(f"{name} {value:.0f}" for name, value in
                                                                parts.items() if value)
            + f", no epoch {rest:.0f} ({rest / len(board):.2f} s per trial)")


def _projected_cold(args: argparse.Namespace, weights: dict[str, str], dataset: Path, root: Path, board: Any,
                    epochs: Any) -> float:
    """The sweep's wall time as it would run with no cache and a fresh worker per trial, from a measured sample:
    each (backbone, size) as a fusion trial with the cache off on a fresh worker (its epoch through the backbone;
    the trial's fixed cost), applied to the trials and epochs this sweep ran."""
    from ray.tune import ExperimentAnalysis

    from exifray.space_file import parse_sweep
    from exifray.sweep import run_sweep

    sample_epochs = 2
    plan = parse_sweep({
        "name": "cold-sample", "scheduler": "none", "max_concurrent": CONCURRENCY, "resources": {"cpus": 1},
        "warm_workers": False,
        "fixed": {"modality": "fusion", "weights": weights, "epochs": sample_epochs, "fine_tune_layers": 0,
                  "early_stopping_patience": sample_epochs, "feature_cache": "off"},
        "params": {"backbone": {"grid": list(weights)}, "image_size": {"grid": args.sizes}}})
    experiment = run_sweep(plan, dataset, storage_path=str(root / "cold")).experiment_dir
    sample = [{**trial.last_result, **trial.config} for trial in ExperimentAnalysis(experiment).trials]
    per_epoch = {(final["backbone"], int(final["image_size"])): float(final["epoch_time_s"]) for final in sample}
    # a trial's wall time outside its epochs: from the worker's start (a fresh process) to its final result
    fixed = float(np.mean([final["epoch_time_s"] * final["epochs"] / (1 - final["outside_training_share"])
                           - final["epoch_time_s"] * final["epochs"] for final in sample]))
    print(f"cold sample ({len(sample)} trials, {sample_epochs} epochs, cache off, fresh workers): a trial's fixed "
          f"cost {fixed:.1f} s; an epoch through the frozen backbone " +
          ", ".join(f"{b} {s} px {t:.1f} s" for (b, s), t in sorted(per_epoch.items())), flush=True)
    total = fixed * len(board)
    for row in epochs.itertuples():
        if row.modality == "exif" or row.phase == "fine_tune":
            total += row.epoch_time_s  # the same work with or without the cache
        else:
            total += per_epoch[(row.backbone, int(row.image_size))]
    return total / CONCURRENCY


def _worker_memory(args: argparse.Namespace, weights: dict[str, str], dataset: Path, root: Path) -> None:
    from ray.tune import ExperimentAnalysis

    from exifray.space_file import parse_sweep
    from exifray.sweep import run_sweep

    document = _document("worker-memory", weights, args.sizes, args) | {
        "num_samples": args.worker_memory, "max_concurrent": 1, "resources": {"cpus": 2},
        "max_trials_per_worker": 10 * args.worker_memory, "worker_growth_mb": 1e9, "scheduler": "none",
        "search": "random"}  # every kind of trial, to its last epoch
    result = run_sweep(parse_sweep(document), dataset, storage_path=str(root / "memory"))
    finals = sorted(({**trial.last_result, "modality": trial.config.get("modality", "fusion"),
                      "backbone": trial.config.get("backbone"), "image_size": trial.config.get("image_size")}
                     for trial in ExperimentAnalysis(result.experiment_dir).trials),
                    key=lambda final: final["worker_trial"])
    pids = {final["pid"] for final in finals}
    print(f"{len(finals)} trials on {len(pids)} worker(s); private memory (USS) when each trial began:", flush=True)
    first = finals[1]["worker_uss_mb"] if len(finals) > 1 else math.nan  # after the first trial
    for final in finals:
        print(f"  trial {final['worker_trial']:3d}  {final['worker_uss_mb']:7.0f} MiB  "
              f"(+{final['worker_uss_mb'] - first:5.0f} over after the first)  {final['modality']} "
              f"{final['backbone'] if final['modality'] != 'exif' else ''} {final['image_size'] or ''}", flush=True)
    growth = [f["worker_uss_mb"] - first for f in finals[1:]]
    print(f"growth over the first trial's: median {np.median(growth):.0f} MiB, max {max(growth):.0f} MiB; "
          f"last 10 trials' slope {np.polyfit(range(10), growth[-10:], 1)[0]:.1f} MiB per trial", flush=True)


if __name__ == "__main__":
    main()
