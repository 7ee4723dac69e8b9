"""Benchmark: a sweep that streams its pixels from the shards against the same sweep holding them in memory.

    python jobs/bench_stream.py                      # 12,000 synthetic photos at 64 px (141 MiB of images)
    ray job submit --working-dir . -- python jobs/bench_stream.py --smoke-test

One image-only SmallCNN trial (1 CPU) five times, in one run:

1. a small dataset (256 photos) in memory: what one trial costs without data (its process, TensorFlow, the
   driver's share) — the "one trial" of the memory bound;
2. the big dataset with `data: {budget_mb: B}`, B a third of its images, so `auto` streams it;
3. the big dataset in memory (`data: {stream: never}`): the in-memory epoch time, and its peak (after 2: the
   driver keeps some of the memory it held for the pixels).

Every second it samples the proportional set size (PSS) of all Ray processes plus this driver (the object store's
shared pages counted once) and prints each run's peak above idle Ray, the trial process's (and its private memory,
USS) and the driver's own peaks; then it runs 3 and 2 again without sampling, for their epoch times (reading smaps
competes for the two cores with the streaming reader thread). The targets: the streamed sweep, and its trial
process, stay under B plus run 1's (the data a trial holds is bounded by the budget, not the dataset), the driver
no longer holds the pixels, and the streamed epoch is ≤ 1.5× the in-memory one. (The sum over all Ray processes
also moves with the idle workers Ray starts and reaps, which is why the roles are shown apart.)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_sweep_memory import PeakSampler, _ray_processes  # noqa: E402 - the sweep memory benchmark's sampler

from exifray.sweep import TRIAL_PROCESS_TITLE  # noqa: E402


class RoleSampler(PeakSampler):
    """PeakSampler, plus the peak PSS of the trial's process (`ray::SweepTrainable`) and of this driver alone."""

    def __init__(self) -> None:
        self.trial_peak = self.trial_uss_peak = self.driver_peak = 0
        super().__init__()

    def run(self) -> None:  # once a second: reading every process's smaps 5 times a second takes a core here
        while not self._stop_event.wait(1.0):
            self.peak = max(self.peak, self.sample())

    def sample(self) -> int:  # type: ignore[override]
        import os

        import psutil

        total = 0
        for process in _ray_processes():
            try:
                info = process.memory_full_info()
                pss = info.pss
                title = " ".join(process.cmdline()[:1])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += pss
            if title.startswith(TRIAL_PROCESS_TITLE):
                self.trial_peak = max(self.trial_peak, pss)
                self.trial_uss_peak = max(self.trial_uss_peak, info.uss)
            elif process.pid == os.getpid():
                self.driver_peak = max(self.driver_peak, pss)
        return total


def _plan(name: str, image_size: int, epochs: int, data: dict[str, object]):
    from exifray.space_file import parse_sweep

    return parse_sweep({
        "name": name, "num_samples": 1, "max_concurrent": 1, "scheduler": "none", "resources": {"cpus": 1},
        "data": data,
        "fixed": {"modality": "image", "backbone": "SmallCNN", "weights": "none", "image_size": image_size,
                  "epochs": epochs, "early_stopping_patience": epochs, "batch_size": 64, "learning_rate": 0.001},
    })


def _sampled_run(plan: Any, data: Path, storage_path: str, idle: int) -> dict[str, Any]:
    """One sweep with the memory sampler running: its peaks (above idle Ray), wall time, epoch time and val F1."""
    from exifray.sweep import run_sweep

    sampler = RoleSampler()
    sampler.start()
    started = time.perf_counter()
    row = run_sweep(plan, data, storage_path=storage_path).leaderboard.iloc[0]
    peak = sampler.stop() - idle
    return {"sweep": peak, "trial": sampler.trial_peak, "trial_uss": sampler.trial_uss_peak,
            "driver": sampler.driver_peak, "wall": time.perf_counter() - started,
            "epoch": float(row["train_time_s"]) / float(row["epochs"]),  # training + validation
            "f1": float(row["val_f1_macro"]), "source": str(row["data_source"])}


def _report(one: dict[str, Any], streamed: dict[str, Any], memory: dict[str, Any], budget_mb: float) -> None:
    """The memory bounds: the streamed run against the one-trial run plus the budget."""
    mib = 2**20
    for what, key in (("whole sweep", "sweep"), ("trial process", "trial")):
        bound = one[key] / mib + budget_mb
        print(f"memory bound, {what}: streamed {streamed[key] / mib:.0f} MiB vs the small dataset's "
              f"{one[key] / mib:.0f} + budget {budget_mb:.1f} = {bound:.0f} MiB ({streamed[key] / mib / bound:.2f}x)")
    held = (streamed["trial_uss"] - memory["trial_uss"]) / mib
    print(f"held by the streamed trial beyond the in-memory trial's private memory (its pixels are in the object "
          f"store): {held:.0f} MiB ({held / budget_mb:.2f}x the budget); driver streamed {streamed['driver'] / mib:.0f}"
          f" MiB vs in memory {memory['driver'] / mib:.0f} MiB; whole sweep streamed {streamed['sweep'] / mib:.0f} "
          f"MiB vs in memory {memory['sweep'] / mib:.0f} MiB ({streamed['sweep'] / memory['sweep']:.2f}x)")


def _epoch_times(runs: dict[str, Any], results: dict[str, dict[str, Any]], labels: tuple[str, ...], args: Any,
                 storage_path: str) -> tuple[dict[str, float], str]:
    """Each labelled run's epoch time, and where it comes from: run again without the sampler, which competes for
    the 2 cores with the streaming reader thread (the smoke test checks the report, not the figure: it takes the
    sampled runs' epochs, two sweeps fewer)."""
    from exifray.sweep import run_sweep

    if args.smoke_test:
        return {label: results[label]["epoch"] for label in labels}, "the sampled runs"
    timed = {}
    for index, label in enumerate(labels):
        data, setting = runs[label]
        row = run_sweep(_plan(f"timed{index}", args.image_size, args.epochs, setting), data,
                        storage_path=storage_path).leaderboard.iloc[0]
        timed[label] = float(row["train_time_s"]) / float(row["epochs"])
    return timed, "runs without the sampler"


def _print_runs(card: Any, args: Any, images_mb: float, idle: int, results: dict[str, dict[str, Any]]) -> None:
    mib = 2**20
    print(f"big dataset: {card.photos} photos at {args.image_size} px in {len(card.shards)} shards, "
          f"{images_mb:.1f} MiB of images; one image-only SmallCNN trial, {args.epochs} epochs, batch 64; "
          f"idle Ray {idle / mib:.0f} MiB PSS")
    for label, run in results.items():
        print(f"{label:50s}: whole sweep {run['sweep'] / mib:5.0f} MiB above idle Ray; trial process "
              f"{run['trial'] / mib:4.0f} (private {run['trial_uss'] / mib:4.0f}), driver {run['driver'] / mib:4.0f}; "
              f"epoch {run['epoch']:.2f} s, val F1 {run['f1']:.3f}, wall {run['wall']:.0f} s [{run['source']}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--smoke-test", action="store_true",
                        help="300 photos at 32 px in shards of 32, 1 epoch; epoch times from the sampled runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.image_size, args.shard_size, args.epochs = 300, 32, 32, 1

    import ray

    from exifray.testing.datasets import make_dataset

    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        root = Path(tmp)
        if not ray.is_initialized():
            ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
        small = make_dataset(root / "small", photos=256, image_size=max(args.image_size, 64),
                             sizes=(args.image_size,), shard_size=args.shard_size)
        big = make_dataset(root / "big", photos=args.photos, image_size=max(args.image_size, 64),
                           sizes=(args.image_size,), shard_size=args.shard_size)
        from exifray.data.card import read_card

        card = read_card(big)
        images_mb = card.photos * args.image_size ** 2 * 3 / 2**20
        budget_mb = images_mb / 3
        small_label, streamed_label, memory_label = ("small dataset, in memory (one trial)",
                                                     f"big dataset, streamed (budget {budget_mb:.1f} MiB)",
                                                     "big dataset, in memory")
        # the streamed run before the in-memory one: the driver keeps some of what it held for the in-memory run
        runs = {small_label: (small, {"stream": "never"}), streamed_label: (big, {"budget_mb": budget_mb}),
                memory_label: (big, {"stream": "never"})}
        idle = PeakSampler.sample()
        results = {label: _sampled_run(_plan(f"run{index}", args.image_size, args.epochs, setting), data,
                                       str(root / "experiments"), idle)
                   for index, (label, (data, setting)) in enumerate(runs.items())}
        timed, timing = _epoch_times(runs, results, (memory_label, streamed_label), args, str(root / "experiments"))
    _print_runs(card, args, images_mb, idle, results)
    _report(results[small_label], results[streamed_label], results[memory_label], budget_mb)
    print(f"epoch time ({timing}): streamed {timed[streamed_label]:.2f} s vs in memory "
          f"{timed[memory_label]:.2f} s ({timed[streamed_label] / timed[memory_label]:.2f}x)")


if __name__ == "__main__":
    main()
