"""Benchmark: what the per-epoch resumable checkpoint costs a trial, against the same trial without it.

    python jobs/bench_checkpoint.py                                    # SmallCNN fusion, 32 px, 10 epochs
    python jobs/bench_checkpoint.py --backbone EfficientNetB0 --image-size 64 --epochs 5
    ray job submit --working-dir . -- python jobs/bench_checkpoint.py --smoke-test

1. baseline: `run_trial` with no report (nothing saved during training);
2. checkpointed: the same trial saving its training state after every epoch (`TrainingState.save`: model
   with optimizer state, best weights, resume.json) and copying it into a storage folder, as a sweep's
   trial does through `tune.report(checkpoint=...)` on local storage.
Prints the mean epoch time of each, the time per save, the checkpoint's size and the ratio to the baseline.
Runs in the job's own process (TensorFlow needs no Ray); ingest of the synthetic input uses Ray Data.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--backbone", default="SmallCNN")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--smoke-test", action="store_true", help="120 photos, TestTinyCNN, 3 epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.backbone, args.epochs = 120, "TestTinyCNN", 3

    from exifray import schema
    from exifray.config import TrialConfig
    from exifray.data.dataset import load_arrays
    from exifray.testing.datasets import make_dataset
    from exifray.train import TrainingState, run_trial

    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, photos=args.photos, image_size=max(48, args.image_size), sizes=(args.image_size,))
        data = load_arrays(dataset, args.image_size)
        config = TrialConfig(modality="fusion", backbone=args.backbone, weights="none", image_size=args.image_size,
                             epochs=args.epochs, early_stopping_patience=args.epochs + 1, batch_size=32)
        saves: list[float] = []
        sizes: list[int] = []

        def checkpoint(row: dict[str, Any], state: TrainingState) -> None:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=root) as folder:
                state.save(folder)
                target = root / "storage" / f"checkpoint_{row[schema.EPOCH]:06d}"
                shutil.copytree(folder, target)
            saves.append(time.perf_counter() - started)
            sizes.append(sum(f.stat().st_size for f in target.iterdir()))

        run_trial(config, data)  # warm-up: TensorFlow's first graph builds are not part of either figure
        baseline = run_trial(config, data)
        checkpointed = run_trial(config, data, report=checkpoint)

    plain = statistics.mean(row[schema.EPOCH_TIME_S] for row in baseline.history)
    # epoch_time_s ends before the report, so the save is added to each checkpointed epoch
    saved = statistics.mean(row[schema.EPOCH_TIME_S] for row in checkpointed.history) + statistics.mean(saves)
    print(f"backbone={args.backbone} image_size={args.image_size} photos={args.photos} epochs={args.epochs} "
          f"params={baseline.metrics[schema.PARAMS]}")
    print(f"baseline, no checkpoints      : {plain:7.3f} s/epoch  (1.00x)")
    print(f"checkpoint after every epoch  : {saved:7.3f} s/epoch  ({saved / plain:.2f}x)")
    print(f"one save (state + copy)       : {statistics.mean(saves) * 1000:7.1f} ms, "
          f"{statistics.mean(sizes) / 1e6:.2f} MB per checkpoint")


if __name__ == "__main__":
    main()
