"""Benchmark: peak memory of a sweep running 1 vs 2 trials at a time (dataset shared through the object store).

    python jobs/bench_sweep_memory.py --data demo-out/dataset --image-size 32
    ray job submit --working-dir . -- python jobs/bench_sweep_memory.py --smoke-test

Runs the same two fusion trials three times: one at a time (the baseline), two at a time sharing the
arrays through the object store (what `exifray sweep` does), and two at a time with each trial reading its
own copy of the Parquet shards (the comparison). Every 0.2 s it samples the proportional set size (PSS:
shared pages divided among the processes that map them, so the object store's copy is counted once) of
all Ray processes on this node plus this driver, and prints each run's peak above idle Ray and its ratio
to the baseline.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path


def _ray_processes() -> list:
    """This driver and its Ray's processes. When it started Ray itself (its GCS is a descendant), its descendants
    only: another Ray on the machine (a parallel test run's) is not this sweep's. Otherwise every Ray process here."""
    import psutil

    me = psutil.Process(os.getpid())
    descendants = me.children(recursive=True)
    if any("gcs_server" in " ".join(_cmdline(process)) for process in descendants):
        return [me, *descendants]
    found = [me]
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.pid != os.getpid() and (cmdline.startswith("ray::") or "raylet" in cmdline
                                           or "gcs_server" in cmdline or "default_worker.py" in cmdline):
            found.append(process)
    return found


def _cmdline(process: object) -> list[str]:
    import psutil

    try:
        return list(process.cmdline())  # type: ignore[attr-defined]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.baseline = self.sample()
        self._stop_event = threading.Event()

    @staticmethod
    def sample() -> int:
        import psutil

        total = 0
        for process in _ray_processes():
            try:
                total += process.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def _space(image_size: int, epochs: int, concurrent: int, name: str):
    from exifray.space_file import parse_sweep

    return parse_sweep({
        "name": name, "num_samples": 2, "max_concurrent": concurrent, "scheduler": "none",
        "resources": {"cpus": 1},
        "fixed": {"modality": "fusion", "backbone": "SmallCNN", "weights": "none", "image_size": image_size,
                  "epochs": epochs, "early_stopping_patience": epochs},
        "params": {"learning_rate": {"loguniform": [0.0005, 0.002]}}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="dataset dir (default: make a synthetic one)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--photos", type=int, default=2000, help="synthetic photos when --data is not given")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--smoke-test", action="store_true", help="300 synthetic photos, 1 epoch")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.epochs, args.data = 300, 1, None

    import ray

    from exifray.sweep import load_sweep_data

    with tempfile.TemporaryDirectory(prefix="bench-sweep-memory-") as tmp:
        data = Path(args.data) if args.data else _synthetic(Path(tmp), args.photos, args.image_size)
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        arrays = load_sweep_data(_space(args.image_size, 1, 1, "x"), data)
        dataset_mb = sum(a.nbytes for a in arrays.values()) / 2**20
        idle = PeakSampler.sample()
        runs = {"1 at a time, shared arrays": (1, True), "2 at a time, shared arrays": (2, True),
                "2 at a time, a copy per trial": (2, False)}
        peaks = {}
        for label, (concurrent, shared) in runs.items():
            sampler = PeakSampler()
            sampler.start()
            started = time.perf_counter()
            _run(_space(args.image_size, args.epochs, concurrent, f"c{len(peaks)}"), data, Path(tmp), shared)
            peaks[label] = (sampler.stop() - idle, time.perf_counter() - started)
    baseline = peaks["1 at a time, shared arrays"][0]
    print(f"dataset: {data} at {args.image_size} px, arrays {dataset_mb:.1f} MiB; 2 fusion SmallCNN trials, "
          f"{args.epochs} epochs; idle Ray {idle / 2**20:.0f} MiB PSS")
    for label, (peak, wall) in peaks.items():
        print(f"{label:30s}: peak {peak / 2**20:6.0f} MiB above idle Ray ({peak / baseline:.2f}x), wall {wall:.0f} s")


class _PerTrialData(Mapping):
    """The comparison: each trial loads its own arrays from the Parquet shards (nothing shared)."""

    def __init__(self, path: str, sizes: tuple) -> None:
        self.path, self.sizes = path, sizes
        self._loaded: dict = {}

    def __getitem__(self, size):
        from exifray.data.dataset import load_arrays

        if size not in self._loaded:
            self._loaded[size] = load_arrays(self.path, size)
        return self._loaded[size]

    def __iter__(self):
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)


def _run(plan, data: Path, tmp: Path, shared: bool) -> None:
    from ray import tune

    from exifray.sweep import build_tuner, load_sweep_data, sweep_trainable

    def arrays() -> Mapping:  # not kept by the driver: with_parameters puts it in the object store
        return (load_sweep_data(plan, data) if shared
                else _PerTrialData(str(data.resolve()), plan.space.image_sizes()))

    trainable = tune.with_resources(tune.with_parameters(sweep_trainable, plan=plan, data=arrays()),
                                    {"cpu": plan.config.resources.cpus})
    build_tuner(plan, trainable, str(tmp / "experiments"), plan.name).fit()


def _synthetic(root: Path, photos: int, image_size: int) -> Path:
    from exifray.testing.datasets import make_dataset

    return make_dataset(root, photos=photos, image_size=max(image_size, 64), sizes=(image_size,))


if __name__ == "__main__":
    main()
