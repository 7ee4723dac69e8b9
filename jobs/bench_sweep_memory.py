"""Benchmark: peak memory of a sweep running 1 vs 2 trials at a time (dataset shared through the object store).

    python jobs/bench_sweep_memory.py --data demo-out/dataset --image-size 32
    ray job submit --working-dir . -- python jobs/bench_sweep_memory.py --smoke-test

Runs the same two fusion trials twice, first one at a time (the baseline), then two at a time, and samples
every 0.2 s the proportional set size (PSS: shared pages divided among the processes that map them, so the
object store's copy of the dataset is counted once) of all Ray processes on this node plus this driver.
Prints the peak of each run, the ratio to the baseline, and the dataset's size in the object store: when
trials share the arrays, two concurrent trials cost one more TensorFlow process, not one more dataset.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path


def _ray_processes() -> list:
    import psutil

    found = [psutil.Process(os.getpid())]
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.pid != os.getpid() and (cmdline.startswith("ray::") or "raylet" in cmdline
                                           or "gcs_server" in cmdline or "default_worker.py" in cmdline):
            found.append(process)
    return found


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
    from exifray.space import parse_space

    return parse_space({
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

    from exifray.sweep import load_sweep_data, run_sweep

    with tempfile.TemporaryDirectory(prefix="bench-sweep-memory-") as tmp:
        data = Path(args.data) if args.data else _synthetic(Path(tmp), args.photos, args.image_size)
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        dataset_mb = sum(a.nbytes for a in load_sweep_data(_space(args.image_size, 1, 1, "x"), data).values()) / 2**20
        peaks = {}
        for concurrent in (1, 2):
            sampler = PeakSampler()
            sampler.start()
            started = time.perf_counter()
            run_sweep(_space(args.image_size, args.epochs, concurrent, f"c{concurrent}"), data,
                      storage_path=str(Path(tmp) / "experiments"))
            peaks[concurrent] = (sampler.stop(), sampler.baseline, time.perf_counter() - started)
    base_peak = peaks[1][0] - peaks[1][1]
    print(f"dataset: {data} at {args.image_size} px, arrays {dataset_mb:.1f} MiB; 2 fusion SmallCNN trials, "
          f"{args.epochs} epochs")
    for concurrent, (peak, before, wall) in peaks.items():
        grown = peak - before
        print(f"{concurrent} trial(s) at a time: peak PSS of Ray processes {peak / 2**20:7.0f} MiB "
              f"(+{grown / 2**20:.0f} MiB over idle Ray; {grown / base_peak:.2f}x), wall {wall:.0f} s")


def _synthetic(root: Path, photos: int, image_size: int) -> Path:
    from exifray.config import IngestConfig
    from exifray.data.ingest import run_ingest
    from exifray.data.synth import SynthConfig, generate

    generate(root / "crawl", SynthConfig(photos=photos, seed=0, image_size=max(image_size, 64)))
    run_ingest(IngestConfig(inputs=(str(root / "crawl"),), out=str(root / "dataset"), sizes=(image_size,)))
    return root / "dataset"


if __name__ == "__main__":
    main()
