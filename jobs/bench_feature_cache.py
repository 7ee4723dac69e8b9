"""Benchmark: a frozen-backbone head phase and a fine-tuning phase trained through the backbone every epoch against
the same seeded trial on cached pooled features and cached activations (the FEATURE CACHE), both measured in this
run.

    python jobs/bench_feature_cache.py          # EfficientNetB0 at 150 px and MobileNetV2 at 96 px, 1,000 photos
    python jobs/bench_feature_cache.py --pairs MobileNetV2:96 --photos 2000 --epochs 15
    ray job submit --working-dir . -- python jobs/bench_feature_cache.py --smoke-test

Each backbone's weights are saved to a local weights file first (no network here; the cache keys on the file's
sha256 as it would on `imagenet`), so both trials run the real pretrained-weights code path: head phase with the
backbone frozen, then `--fine-tune-epochs` with the top `--fine-tune-layers` trainable. Printed per backbone: the
mean head epoch (through the backbone vs on features) and its ratio, the whole head phase including the one-off
feature build and its ratio, the mean fine-tuning epoch (through the backbone vs above the cut on cached
activations) and its ratio, and both validation macro F1 (they must agree). Runs in the job's own process;
ingest uses Ray Data.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _pair(text: str) -> tuple[str, int]:
    name, size = text.split(":")
    return name, int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=15, help="head epochs (fusion.yaml's head phase)")
    parser.add_argument("--fine-tune-layers", type=int, default=20)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--pairs", type=_pair, nargs="+", default=[("EfficientNetB0", 150), ("MobileNetV2", 96)],
                        metavar="BACKBONE:SIZE")
    parser.add_argument("--smoke-test", action="store_true",
                        help="120 photos, SmallCNN at 32 px, 2 head epochs, 1 fine-tuning epoch of its top 4 layers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        # (not a MobileNet: tracing one's training step takes ~20 s here, and the smoke traces several)
        args.photos, args.epochs, args.fine_tune_epochs, args.pairs = 120, 2, 1, [("SmallCNN", 32)]
        args.fine_tune_layers = 4

    from exifray.config import TrialConfig
    from exifray.data.dataset import load_arrays
    from exifray.feature_cache import CacheAccess, FeatureCache
    from exifray.models.registry import create_backbone
    from exifray.testing.datasets import make_dataset
    from exifray.train import run_trial

    sizes = tuple(sorted({size for _, size in args.pairs}))
    with tempfile.TemporaryDirectory(prefix="bench-feature-cache-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, photos=args.photos, image_size=max(160, max(sizes)), sizes=sizes)
        print(f"{args.photos} photos, {args.epochs} head epochs, sizes {list(sizes)}", flush=True)
        for backbone, size in args.pairs:
            weights = root / f"{backbone}.weights.h5"
            create_backbone(backbone, size).save_weights(weights)
            data = load_arrays(dataset, size)
            config = TrialConfig(modality="image", backbone=backbone, weights=str(weights), image_size=size,
                                 fine_tune_layers=args.fine_tune_layers, fine_tune_epochs=args.fine_tune_epochs,
                                 epochs=args.epochs, early_stopping_patience=args.epochs + 1,
                                 batch_size=32, seed=0)
            run_trial(TrialConfig.from_tune({**config.to_dict(), "epochs": 1, "fine_tune_epochs": 0,
                                             "feature_cache": "off"}), data)  # warm-up
            runs = {}
            for mode in ("off", "auto"):
                access = CacheAccess(FeatureCache(str(root / f"cache-{backbone}"))) if mode == "auto" else None
                started = time.perf_counter()
                result = run_trial(TrialConfig.from_tune({**config.to_dict(), "feature_cache": mode}), data,
                                   cache=access)
                runs[mode] = (result, time.perf_counter() - started)
            _print(backbone, size, runs)


def _print(backbone: str, size: int, runs: dict) -> None:
    plain, plain_s = runs["off"]
    cached, cached_s = runs["auto"]

    def epochs(result: Any, phase: str) -> list[float]:
        return [row["epoch_time_s"] for row in result.history if row["phase"] == phase]

    plain_epoch, cached_epoch = statistics.mean(epochs(plain, "head")), statistics.mean(epochs(cached, "head"))
    build = cached.metrics["feature_build_s"]  # the pooled features' and the activations' builds
    plain_phase, cached_phase = sum(epochs(plain, "head")), sum(epochs(cached, "head")) + build
    print(f"{backbone} {size} px: head epoch {plain_epoch:.3f} s through the backbone, {cached_epoch:.3f} s on "
          f"cached features: {plain_epoch / cached_epoch:.2f}x", flush=True)
    print(f"{backbone} {size} px: whole head phase {plain_phase:.1f} s vs {cached_phase:.1f} s including the "
          f"{build:.1f} s of builds: {plain_phase / cached_phase:.1f}x (whole trials {plain_s:.1f} s vs "
          f"{cached_s:.1f} s: {plain_s / cached_s:.1f}x)", flush=True)
    if epochs(cached, "fine_tune"):
        plain_tune, cached_tune = statistics.mean(epochs(plain, "fine_tune")), statistics.mean(epochs(cached,
                                                                                                      "fine_tune"))
        print(f"{backbone} {size} px: fine-tuning epoch {plain_tune:.3f} s through the backbone, {cached_tune:.3f} s "
              f"above the cut on cached activations: {plain_tune / cached_tune:.2f}x "
              f"(fine_tune_cache={cached.metrics['fine_tune_cache']})", flush=True)
    print(f"{backbone} {size} px: val macro F1 {plain.metrics['val_f1_macro']:.4f} through the backbone, "
          f"{cached.metrics['val_f1_macro']:.4f} cached (feature_cache={cached.metrics['feature_cache']})",
          flush=True)


if __name__ == "__main__":
    main()
