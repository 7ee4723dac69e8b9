"""Benchmark: the fixed cost of a sweep trial whose head phase trains on cached features — how much of its wall
time is not training.

    python jobs/bench_lean_trial.py                    # MobileNetV2 at 96 px, 1,000 photos, 10 cached head epochs
    ray job submit --working-dir . -- python jobs/bench_lean_trial.py --smoke-test

Runs a one-trial sweep to build the cache entry, then a second sweep of the same trial twice (cache hits, as most
trials of a sweep are) with warm workers: its first trial on a fresh worker, its second on that same worker.
Prints both side by side: the worker process's start to its first epoch
(`process_startup_s`: Ray's worker, importing TensorFlow, loading the arrays, building the model, obtaining the
features), the epochs' total time, what came after them (test evaluation, latency, the final checkpoint), and
`outside_training_share`, the share of the trial's wall time that no epoch used.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backbone", default="MobileNetV2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--smoke-test", action="store_true", help="150 photos, TestTinyMobileNet at 32 px, 3 epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.epochs, args.backbone, args.image_size = 150, 3, "TestTinyMobileNet", 32

    import ray

    from exifray.models.registry import create_backbone
    from exifray.space_file import parse_sweep
    from exifray.sweep import run_sweep
    from exifray.testing.datasets import make_dataset

    with tempfile.TemporaryDirectory(prefix="bench-lean-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, photos=args.photos, image_size=max(48, args.image_size + 16),
                               sizes=(args.image_size,))
        weights = root / "backbone.weights.h5"
        create_backbone(args.backbone, args.image_size).save_weights(weights)
        if not ray.is_initialized():
            ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
        from ray import tune

        class DriverClock(tune.Callback):  # when the driver saw each trial complete, on its own clock
            completed: dict[str, float] = {}

            def on_trial_complete(self, iteration: int, trials: list, trial: tune.experiment.Trial,
                                  **info: object) -> None:
                self.completed[trial.trial_id] = time.time()

        for name, trials in (("build", 1), ("hit", 2)):
            # cpus 2 = the whole machine: Tune cannot start the second trial's worker early, so it reuses the first
            plan = parse_sweep({"name": name, "num_samples": trials, "scheduler": "none", "resources": {"cpus": 2},
                                "warm_workers": True,
                                "fixed": {"modality": "image", "backbone": args.backbone, "weights": str(weights),
                                          "image_size": args.image_size, "fine_tune_layers": 0,
                                          "epochs": args.epochs, "early_stopping_patience": args.epochs + 1},
                                "params": {"learning_rate": {"choice": [0.001]}}})
            result = run_sweep(plan, dataset, storage_path=str(root / "experiments"), callbacks=[DriverClock()])
        _print_trials(args, result.experiment_dir, DriverClock.completed)


def _print_trials(args: argparse.Namespace, experiment: str, completed: dict[str, float]) -> None:
    """The hit sweep's two trials side by side: the first on a fresh worker, the second on the same worker, warm.
    A warm trial's wall time is on the driver's clock: from the driver seeing the first trial complete to seeing
    the second complete (Tune's reset, the trial, its final report and checkpoint)."""
    from ray.tune import ExperimentAnalysis

    # Tune's final results: ours plus Tune's pid and timestamp; the epochs' total is their mean times their count
    finals = [trial.last_result | {"completed": completed[trial.trial_id]}
              for trial in ExperimentAnalysis(experiment).trials]
    trials = sorted(((final, final["epoch_time_s"] * final["epochs"]) for final in finals),
                    key=lambda trial: trial[0]["worker_trial"])
    (fresh, fresh_epochs), (warm, warm_epochs) = trials
    if fresh["pid"] != warm["pid"]:
        raise SystemExit(f"the two trials ran on different workers ({fresh['pid']}, {warm['pid']}): no reuse")
    fresh_wall = fresh_epochs / (1 - fresh["outside_training_share"])
    warm_wall = warm["completed"] - fresh["completed"]
    print(f"{args.backbone} {args.image_size} px, {args.photos} photos, {args.epochs} head epochs on cached "
          f"features (feature_cache={warm['feature_cache']}):", flush=True)
    print(f"{'':32s}{'fresh worker':>14s}{'warm worker':>14s}", flush=True)
    rows = [("received -> first epoch (s)", fresh["process_startup_s"], warm["process_startup_s"]),
            ("  in the trial function (s)", fresh["startup_s"], warm["startup_s"]),
            (f"{args.epochs} epochs (s)", fresh_epochs, warm_epochs),
            ("after the epochs (s)", fresh_wall - fresh["process_startup_s"] - fresh_epochs,
             warm["completed"] - warm["first_epoch_at"] - warm_epochs),
            ("trial wall time (s)", fresh_wall, warm_wall),
            ("outside training (%)", 100 * fresh["outside_training_share"], 100 * (1 - warm_epochs / warm_wall))]
    for label, first, second in rows:
        print(f"  {label:30s}{first:14.2f}{second:14.2f}", flush=True)
    print(f"  warm trial's own outside_training_share (from its reset): {100 * warm['outside_training_share']:.0f} %",
          flush=True)

if __name__ == "__main__":
    main()
