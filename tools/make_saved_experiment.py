"""Writes `tests/fixtures/saved-experiment.tar.gz`: an experiment saved by an older exifray, its driver killed
mid-sweep, so that a test can show today's code still resumes it and reads it (the Optuna searcher and Tune's
state pickle names such as `exifray.sweep._define_by_run`).

    python tools/make_saved_experiment.py   # run at the commit whose saved state the fixture should hold

Two image-only TPE trials (TestTinyCNN from scratch, 30 epochs) on the integration tier's `small_dataset`
recipe, one at a time; the driver is killed once Tune's state records the first as finished, leaving the
second to resume (about 300 KiB).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "saved-experiment.tar.gz"
NAME = "saved"
SPACE = {"name": NAME, "seed": 5, "n_startup_trials": 2, "num_samples": 2, "max_concurrent": 1,
         "scheduler": "none", "resources": {"cpus": 1},
         "fixed": {"modality": "image", "backbone": "TestTinyCNN", "weights": "none", "epochs": 30,
                   "early_stopping_patience": 30, "batch_size": 32},
         "params": {"dropout": {"uniform": [0.0, 0.5]},
                    "learning_rate": {"loguniform": [0.0005, 0.005]}}}


def _finished(experiment: Path) -> int:
    """Finished trials in Tune's saved state (which can lag behind `leaderboard.csv`)."""
    from exifray.errors import InputNotFoundError
    from exifray.experiment import open_experiment

    try:
        return int((open_experiment(str(experiment)).frame["status"] == "complete").sum())
    except InputNotFoundError:
        return 0


def main() -> None:
    from exifray.testing.datasets import make_dataset

    with tempfile.TemporaryDirectory(prefix="saved-experiment-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root / "small", photos=240, seed=3, image_size=48, sizes=(32,), shard_size=100)
        space = root / "saved.yaml"
        space.write_text(yaml.safe_dump(SPACE))
        storage = root / "experiments"
        command = [sys.executable, "-m", "exifray", "sweep", "--space", str(space), "--data", str(dataset),
                   "--storage-path", str(storage)]
        driver = subprocess.Popen(command, start_new_session=True)
        deadline = time.monotonic() + 600
        while _finished(storage / NAME) < 1 and driver.poll() is None:
            if time.monotonic() > deadline:
                raise SystemExit("the sweep did not finish a trial in 10 minutes")
            time.sleep(0.5)
        if driver.poll() is not None:
            raise SystemExit(f"the sweep ended before it could be killed (exit {driver.returncode})")
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        with tarfile.open(OUT, "w:gz") as archive:
            archive.add(storage / NAME, arcname=NAME)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
