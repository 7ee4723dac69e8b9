"""Benchmark: the fixed cost of a sweep trial whose head phase trains on cached features — how much of its wall
time is not training.

    python jobs/bench_lean_trial.py                    # MobileNetV2 at 96 px, 1,000 photos, 10 cached head epochs
    ray job submit --working-dir . -- python jobs/bench_lean_trial.py --smoke-test

Runs a one-trial sweep to build the cache entry, then the same trial again as a second sweep (a cache hit, as
most trials of a sweep are). Prints for the second trial: the worker process's start to its first epoch
(`process_startup_s`: Ray's worker, importing TensorFlow, loading the arrays, building the model, obtaining the
features), the epochs' total time, what came after them (test evaluation, latency, the final checkpoint), and
`outside_training_share`, the share of the trial's wall time that no epoch used.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
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
        for name in ("build", "hit"):
            plan = parse_sweep({"name": name, "num_samples": 1, "scheduler": "none", "resources": {"cpus": 2},
                                "fixed": {"modality": "image", "backbone": args.backbone, "weights": str(weights),
                                          "image_size": args.image_size, "fine_tune_layers": 0,
                                          "epochs": args.epochs, "early_stopping_patience": args.epochs + 1},
                                "params": {"learning_rate": {"choice": [0.001]}}})
            result = run_sweep(plan, dataset, storage_path=str(root / "experiments"))
        (checkpoint,) = result.leaderboard["checkpoint"]
        metrics = json.loads((Path(checkpoint) / "metrics.json").read_text())
        history = [json.loads(line) for line in (Path(checkpoint) / "history.jsonl").read_text().splitlines()]
        epochs = sum(row["epoch_time_s"] for row in history)
        share = metrics["outside_training_share"]
        wall = epochs / (1 - share)
        after = wall - metrics["process_startup_s"] - epochs
        print(f"{args.backbone} {args.image_size} px, {args.photos} photos, {args.epochs} head epochs on cached "
              f"features (feature_cache={metrics['feature_cache']}):", flush=True)
        print(f"  process start -> first epoch  {metrics['process_startup_s']:6.1f} s  (in the trial function: "
              f"{metrics['startup_s']:.1f} s)", flush=True)
        print(f"  {args.epochs} epochs                    {epochs:6.1f} s  ({epochs / args.epochs:.3f} s each)",
              flush=True)
        print(f"  after the epochs              {after:6.1f} s  (test, latency, final checkpoint)", flush=True)
        print(f"  trial wall time               {wall:6.1f} s; outside training: {100 * share:.0f} %", flush=True)


if __name__ == "__main__":
    main()
