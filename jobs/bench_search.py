"""Benchmark: how much compute random search, independent TPE and (multivariate, grouped) TPE each need, with and
without ASHA, to find what the exhaustive grid finds on a conditional space, over many seeds, in one run.

    python jobs/bench_search.py                        # 800 photos, a 51-point conditional grid, 10 seeds each
    python jobs/bench_search.py --plot docs/bench_search.png
    ray job submit --working-dir . -- python jobs/bench_search.py --smoke-test

The space is conditional: modality first, then only its own settings. Image trials choose a backbone (TestTinyCNN
or SmallCNN, each from a local weights file, so the head phase trains on cached features) and a learning rate;
EXIF trials an EXIF tag subset and a learning rate; fusion trials all of those and a fusion width: 6 + 9 + 36 = 51
points at 32 px, 6 head epochs each. The grid runs every point to its last epoch (its best validation macro F1
is the target). Each search samples the same values as categoricals, `--trials` trials per run, 2 at a time,
once per seed and per method: `search: random | independent_tpe | tpe`, each with ASHA (grace 2, reduction 3)
and without a scheduler. Every sweep shares one FEATURE CACHE, built by the grid.

Printed per method: in how many seeds a finished trial came within 0.005 of the grid's best, and the median and
worst trial-epochs, wall time and CO2-eq spent until it first did (counted over the trials finished by then, in
finishing order). `--plot`: the best-so-far validation macro F1 against trial-epochs, median and range over the
seeds, one panel per scheduler.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 0.005
METHODS = ("random", "independent_tpe", "tpe")
SCHEDULERS = ("asha", "none")
SUBSETS = {"exposure": ["ExposureTime", "FNumber", "ISO"], "scene": ["Flash", "FocalLength", "LightSource"]}


def _plan(name: str, weights: dict[str, str], epochs: int, values: dict[str, list[Any]], *, search: str | None,
          scheduler: str, seed: int, trials: int) -> Any:
    from exifray.space_file import parse_sweep

    kind = "grid" if search is None else "choice"
    document: dict[str, Any] = {
        "name": name, "seed": seed, "max_concurrent": 2, "n_startup_trials": 5, "resources": {"cpus": 1},
        "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 3} if scheduler == "asha" else "none",
        "tag_subsets": SUBSETS,
        "fixed": {"weights": weights, "image_size": 32, "epochs": epochs, "fine_tune_layers": 0,
                  "early_stopping_patience": epochs, "batch_size": 32, "seed": 0},
        "params": {name: {kind: choices} for name, choices in values.items()}}
    if search is not None:
        document |= {"search": search, "num_samples": trials}
    return parse_sweep(document)


def _finished(experiment: str) -> Any:
    """Every trial with its last result's timestamp, epochs, best validation F1 and emissions, in finishing order."""
    import pandas as pd
    from ray.tune import ExperimentAnalysis

    rows = []
    for trial_id, frame in ExperimentAnalysis(experiment).trial_dataframes.items():
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


def _best_so_far(trials: Any, budget: int) -> np.ndarray:
    """The best validation F1 among the trials finished once each number of trial-epochs 1..budget was spent."""
    curve = np.full(budget, np.nan)
    spent = np.cumsum(trials["epochs"].to_numpy())
    best = np.maximum.accumulate(trials["val"].to_numpy())
    for used, value in zip(spent, best, strict=True):
        curve[min(used, budget) - 1:] = value
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--trials", type=int, default=20, help="trials per search run")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per method and scheduler")
    parser.add_argument("--plot", type=Path, help="write the best-so-far curves here (PNG)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="150 photos, 2 epochs, a 4-point grid, 3 trials, 1 seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    values: dict[str, list[Any]] = {"modality": ["image", "exif", "fusion"], "backbone": ["TestTinyCNN", "SmallCNN"],
                                    "exif_tags": ["all", "exposure", "scene"], "fusion_width": [16, 64],
                                    "learning_rate": [0.001, 0.003, 0.01]}
    if args.smoke_test:
        args.photos, args.epochs, args.trials, args.seeds = 150, 2, 3, 1
        values = {"modality": ["image", "fusion"], "backbone": ["TestTinyCNN"], "exif_tags": ["exposure"],
                  "fusion_width": [16], "learning_rate": [0.001, 0.01]}

    import ray

    from exifray.sweep import run_sweep
    from exifray.testing.datasets import make_dataset, weights_files

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, photos=args.photos, image_size=48, sizes=(32,))
        weights = weights_files(root, values["backbone"], 32)
        if not ray.is_initialized():
            ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
        storage = str(root / "experiments")
        bench_started = time.time()
        grid_plan = _plan("grid", weights, args.epochs, values, search=None, scheduler="none", seed=0, trials=0)
        started = time.time()
        run_sweep(grid_plan, dataset, storage_path=storage)
        grid = _finished(f"{storage}/grid")
        best = float(grid["val"].max())
        total = (int(grid["epochs"].sum()), float(grid["finished"].max() - started), float(grid["co2"].sum()))
        print(f"grid: {grid_plan.space.total_trials} points, best val_f1_macro {best:.4f}; whole grid {total[0]} "
              f"trial-epochs, {total[1]:.0f} s, {total[2]:.2e} kg CO2-eq (it built the cache entries)", flush=True)
        budget = args.trials * (args.epochs + 1)
        curves: dict[tuple[str, str], list[np.ndarray]] = {}
        for scheduler in SCHEDULERS:
            for method in METHODS:
                costs, curves[(method, scheduler)] = [], []
                for seed in range(args.seeds):
                    name = f"{method}-{scheduler}-{seed}"
                    started = time.time()
                    run_sweep(_plan(name, weights, args.epochs, values, search=method, scheduler=scheduler,
                                    seed=seed, trials=args.trials), dataset, storage_path=storage)
                    trials = _finished(f"{storage}/{name}")
                    costs.append(_cost_to_reach(trials, best, started))
                    curves[(method, scheduler)].append(_best_so_far(trials, budget))
                _summarise(method, scheduler, costs, total)
        print(f"bench wall time {time.time() - bench_started:.0f} s", flush=True)
        if args.plot:
            _plot(curves, best, args.plot)
            print(f"plot: {args.plot}", flush=True)


def _summarise(method: str, scheduler: str, costs: list[tuple[int, float, float] | None],
               total: tuple[int, float, float]) -> None:
    reached = [cost for cost in costs if cost is not None]
    label = f"{method} + {'ASHA' if scheduler == 'asha' else 'no scheduler'}"
    if not reached:
        print(f"{label}: within {TOLERANCE} of the grid's best in 0 of {len(costs)} seeds", flush=True)
        return
    epochs, walls, co2 = (np.array([cost[i] for cost in reached]) for i in range(3))
    print(f"{label}: within {TOLERANCE} of the grid's best in {len(reached)} of {len(costs)} seeds; to first reach "
          f"it, median / worst: {np.median(epochs):.0f} / {epochs.max():.0f} trial-epochs "
          f"({np.median(epochs) / total[0]:.2f}x / {epochs.max() / total[0]:.2f}x the grid's), "
          f"{np.median(walls):.0f} / {walls.max():.0f} s, {np.median(co2):.2e} / {co2.max():.2e} kg", flush=True)


def _plot(curves: dict[tuple[str, str], list[np.ndarray]], best: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(SCHEDULERS), figsize=(11, 4), sharey=True)
    for axis, scheduler in zip(axes, SCHEDULERS, strict=True):
        for method in METHODS:
            runs = np.vstack(curves[(method, scheduler)])
            x = np.arange(1, runs.shape[1] + 1)
            with warnings.catch_warnings():  # before any trial of a run finished, its curve has no value yet
                warnings.simplefilter("ignore", RuntimeWarning)
                median, low, high = (np.nanmedian(runs, axis=0), np.nanmin(runs, axis=0), np.nanmax(runs, axis=0))
            line, = axis.plot(x, median, label=method, drawstyle="steps-post")
            axis.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0, step="post")
        axis.axhline(best - TOLERANCE, color="grey", linestyle="--", linewidth=1, label="grid's best - 0.005")
        axis.set_title("with ASHA" if scheduler == "asha" else "no scheduler")
        axis.set_xlabel("trial-epochs spent")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("best validation macro F1 so far")
    axes[0].legend(loc="lower right")
    figure.suptitle(f"best so far: median and range over {len(next(iter(curves.values())))} seeds")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
