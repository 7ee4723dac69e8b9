"""Benchmark: a 16-trial ASHA sweep shaped like `search_spaces/fusion.yaml` with the FEATURE CACHE on and warm workers,
against the same sweep with the cache off and a fresh worker per trial, both run here, one after the other.

    python jobs/bench_sweep_speed.py                  # 1,000 photos, 2 backbones x 64/96 px x 4 learning rates
    ray job submit --working-dir . -- python jobs/bench_sweep_speed.py --smoke-test

The grid is fixed (a grid, not TPE), so both sweeps train the same 16 configurations: fusion models over two
backbones with local weights files, a 15-epoch head phase with the backbone frozen, then 2 fine-tuning epochs of
the top 20 layers; ASHA stops weak trials after 3 epochs. Printed: each sweep's wall time and their ratio, the
entries built, the trial-epochs run, and per configuration the validation macro F1 on and off (and the largest
difference among trials that ran the same number of epochs in both).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

BACKBONES = ["MobileNetV2", "TestTinyMobileNet"]


def _plan(name: str, weights: dict[str, str], sizes: list[int], epochs: int, mode: str,
          rates: list[float]) -> Any:
    from exifray.space_file import parse_sweep

    return parse_sweep({
        "name": name, "max_concurrent": 2, "resources": {"cpus": 1},
        "scheduler": {"type": "asha", "grace_period": 3, "reduction_factor": 3},
        "fixed": {"modality": "fusion", "weights": weights, "epochs": epochs, "fine_tune_layers": 20,
                  "fine_tune_epochs": 2, "early_stopping_patience": epochs, "batch_size": 32, "fusion_width": 64,
                  "seed": 0, "feature_cache": mode},
        "warm_workers": mode != "off",  # the baseline is as before both: no cache, a fresh worker per trial
        "params": {"backbone": {"grid": list(weights)}, "image_size": {"grid": sizes},
                   "learning_rate": {"grid": rates}}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=15, help="head epochs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.0003, 0.001, 0.003, 0.01])
    parser.add_argument("--backbones", nargs="+", default=BACKBONES)
    parser.add_argument("--smoke-test", action="store_true",
                        help="150 photos, TestTinyCNN at 32 px, 1 learning rate, 3 head epochs: one trial a sweep")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.epochs, args.sizes, args.learning_rates = 150, 3, [32], [0.003]
        args.backbones = ["TestTinyCNN"]

    import ray
    from bench_sweep_200 import epoch_rows, slot_seconds  # (jobs/ is on the path of a job's entrypoint)

    from exifray.feature_cache import FeatureCache
    from exifray.sweep import run_sweep
    from exifray.testing.datasets import make_dataset, weights_files

    with tempfile.TemporaryDirectory(prefix="bench-sweep-speed-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, photos=args.photos, image_size=max(args.sizes) + 16, sizes=tuple(args.sizes))
        weights = weights_files(root, args.backbones, max(args.sizes))
        if not ray.is_initialized():
            ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
        boards, walls = {}, {}
        for mode in ("off", "auto"):
            storage = root / f"experiments-{mode}"
            started = time.perf_counter()
            plan = _plan(f"speed-{mode}", weights, args.sizes, args.epochs, mode, args.learning_rates)
            result = run_sweep(plan, dataset, storage_path=str(storage))
            walls[mode], boards[mode] = time.perf_counter() - started, result.leaderboard
            built = len(FeatureCache.under(str(storage)).entries())
            print(f"feature_cache {mode}: {len(result.leaderboard)} trials, "
                  f"{int(result.leaderboard['epochs'].sum())} trial-epochs, {built} cache entries built, "
                  f"{walls[mode]:.0f} s ({'fresh' if mode == 'off' else 'warm'} workers)", flush=True)
            print(slot_seconds(epoch_rows(result.experiment_dir), result.leaderboard, walls[mode],
                               plan.space.max_concurrent), flush=True)
        print(f"sweep wall time: {walls['off']:.0f} s off, {walls['auto']:.0f} s on: "
              f"{walls['off'] / walls['auto']:.1f}x", flush=True)
        _compare(boards)


def _compare(boards: dict[str, Any]) -> None:
    keys = ["backbone", "image_size", "learning_rate"]
    off = boards["off"].set_index(keys)
    on = boards["auto"].set_index(keys)
    same = off.index.intersection(on.index)
    equal_epochs = [k for k in same if off.loc[k, "epochs"] == on.loc[k, "epochs"]]
    for key in sorted(same):
        print(f"  {key}: val_f1_macro off {off.loc[key, 'val_f1_macro']:.4f} ({off.loc[key, 'epochs']} epochs), "
              f"on {on.loc[key, 'val_f1_macro']:.4f} ({on.loc[key, 'epochs']} epochs, "
              f"{on.loc[key, 'feature_cache']})", flush=True)
    if equal_epochs:
        worst = max(abs(off.loc[k, "val_f1_macro"] - on.loc[k, "val_f1_macro"]) for k in equal_epochs)
        print(f"largest |val_f1_macro off - on| over the {len(equal_epochs)} trials with equal epochs: {worst:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
