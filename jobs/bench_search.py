"""Benchmark: how much compute TPE + ASHA needs to find what the exhaustive grid finds, measured in one run.

    python jobs/bench_search.py                        # 2,000 photos, a 24-point grid, TPE + ASHA with 3 seeds
    ray job submit --working-dir . -- python jobs/bench_search.py --smoke-test

The space: fusion models (SmallCNN from scratch at 32 px, 8 epochs) over learning rate (4 values), fusion width
(3) and dropout (2) = 24 points. The grid runs every point to its last epoch; TPE + ASHA (grace 2, reduction 3)
samples the same 24 points as categoricals, 24 trials, once per seed. For each run: the trial-epochs, wall time
and CO2-eq spent until a finished trial first reached the grid's best validation macro F1 (within 0.005), counted
over the trials finished by then in finishing order, and those costs as ratios to the grid's whole run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

TOLERANCE = 0.005


def _plan(name: str, grid: bool, seed: int, epochs: int, values: dict[str, list[float]], samples: int) -> Any:
    from exifray.space_file import parse_sweep

    kind = "grid" if grid else "choice"
    document: dict[str, Any] = {
        "name": name, "seed": seed, "max_concurrent": 2, "n_startup_trials": 6, "resources": {"cpus": 1},
        "scheduler": "none" if grid else {"type": "asha", "grace_period": 2, "reduction_factor": 3},
        "fixed": {"modality": "fusion", "backbone": "SmallCNN", "weights": "none", "image_size": 32, "epochs": epochs,
                  "early_stopping_patience": epochs, "batch_size": 32},
        "params": {name: {kind: choices} for name, choices in values.items()}}
    if not grid:
        document["num_samples"] = samples
    return parse_sweep(document)


def _finished(experiment: str) -> Any:
    """Every trial with its last result's timestamp, epochs, best validation F1 and emissions, in finishing order."""
    import pandas as pd
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(experiment)
    rows = []
    for trial_id, frame in analysis.trial_dataframes.items():
        rows.append({"trial_id": trial_id, "finished": float(frame["timestamp"].max()),
                     "epochs": int(frame["epoch"].max()), "val": float(frame["val_f1_macro"].max()),
                     "co2": float(frame["emissions_kg"].max())})
    return pd.DataFrame(rows).sort_values("finished").reset_index(drop=True)


def _cost_to_reach(trials: Any, target: float, started: float) -> tuple[int, float, float] | None:
    done = trials[trials["val"] >= target - TOLERANCE]
    if done.empty:
        return None
    upto = trials.loc[: done.index[0]]
    return int(upto["epochs"].sum()), float(done["finished"].iloc[0] - started), float(upto["co2"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--smoke-test", action="store_true", help="200 photos, 2 epochs, 2 points, 1 seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    values: dict[str, list[float]] = {"learning_rate": [0.0003, 0.001, 0.003, 0.01], "fusion_width": [16, 32, 64],
                                      "dropout": [0.1, 0.4]}
    if args.smoke_test:
        args.photos, args.epochs, args.seeds = 200, 2, [0]
        values = {"learning_rate": [0.001, 0.01], "fusion_width": [16], "dropout": [0.1]}

    import ray

    from exifray.sweep import run_sweep
    from exifray.testing.datasets import make_dataset

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, photos=args.photos, image_size=48, sizes=(32,))
        if not ray.is_initialized():
            ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
        grid_plan = _plan("grid", True, 0, args.epochs, values, 0)
        points = grid_plan.space.total_trials
        started = time.time()
        run_sweep(grid_plan, dataset, storage_path=str(root / "experiments"))
        grid = _finished(str(root / "experiments" / "grid"))
        best = float(grid["val"].max())
        total = (int(grid["epochs"].sum()), float(grid["finished"].max() - started), float(grid["co2"].sum()))
        print(f"grid: {points} points, best val_f1_macro {best:.4f}; whole grid {total[0]} trial-epochs, "
              f"{total[1]:.0f} s, {total[2]:.2e} kg CO2-eq", flush=True)
        reached = _cost_to_reach(grid, best, started)
        assert reached is not None
        print(f"grid first reached it after {reached[0]} trial-epochs, {reached[1]:.0f} s, {reached[2]:.2e} kg",
              flush=True)
        for seed in args.seeds:
            started = time.time()
            run_sweep(_plan(f"tpe{seed}", False, seed, args.epochs, values, points), dataset,
                      storage_path=str(root / "experiments"))
            trials = _finished(str(root / "experiments" / f"tpe{seed}"))
            cost = _cost_to_reach(trials, best, started)
            spent = (int(trials["epochs"].sum()), float(trials["finished"].max() - started))
            if cost is None:
                print(f"TPE + ASHA seed {seed}: never within {TOLERANCE} of the grid's best in {len(trials)} trials "
                      f"(best {trials['val'].max():.4f}; spent {spent[0]} trial-epochs, {spent[1]:.0f} s)", flush=True)
                continue
            print(f"TPE + ASHA seed {seed}: reached {best - TOLERANCE:.4f} after {cost[0]} trial-epochs, "
                  f"{cost[1]:.0f} s, {cost[2]:.2e} kg = {cost[0] / total[0]:.2f}x / {cost[1] / total[1]:.2f}x / "
                  f"{cost[2] / total[2]:.2f}x the whole grid (epochs / wall / CO2); whole run {spent[0]} "
                  f"trial-epochs, {spent[1]:.0f} s", flush=True)


if __name__ == "__main__":
    main()
