"""Per-trial GPU requests reach Ray's scheduler: on a head that declares one GPU (Ray's scheduler takes the
count on trust, so no GPU is needed), trials asking for half a GPU share it two at a time and never three,
although the CPUs would allow four. The trials themselves run on the CPU here (TensorFlow finds no device)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pandas as pd

LocalCluster = Any  # tests/cluster/conftest.py

SPACE = """
name: halves
scheduler: none
max_concurrent: 3
resources: {cpus: 0.5, gpus: 0.5}
fixed: {modality: image, backbone: SmallCNN, weights: none, image_size: 32, epochs: 30,
        early_stopping_patience: 100, batch_size: 16}
params:
  learning_rate: {grid: [0.001, 0.002, 0.003]}
"""


def _interval(trial_dir: Path) -> tuple[float, float]:
    """When the trial ran: from its first result back by that result's running time, to its last result."""
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    return rows[0]["timestamp"] - rows[0]["time_total_s"], float(rows[-1]["timestamp"])


def test_half_gpu_trials_share_one_gpu_two_at_a_time(local_cluster: LocalCluster, tmp_path: Path) -> None:
    cluster = local_cluster
    cluster.start_head(num_cpus=2, num_gpus=1)
    ingest = cluster.submit("jobs/ingest.py", "--smoke-test", "--out", str(tmp_path / "ingest"))
    assert ingest.returncode == 0, (ingest.stdout + ingest.stderr)[-3000:]
    space = tmp_path / "halves.yaml"
    space.write_text(SPACE)
    sweep = cluster.submit("jobs/sweep.py", "--space", str(space), "--data", str(tmp_path / "ingest" / "dataset"),
                    "--storage-path", str(tmp_path / "experiments"))
    output = sweep.stdout + sweep.stderr
    assert sweep.returncode == 0, output[-4000:]
    assert "0.5 CPU / 0.5 GPU each" in output  # the request as the driver passed it to tune.with_resources
    experiment = tmp_path / "experiments" / "halves"
    board = pd.read_csv(experiment / "leaderboard.csv")
    assert len(board) == 3 and set(board["status"]) == {"complete"}
    spans = [_interval(folder) for folder in sorted(experiment.glob("trial_*"))]

    def overlap(*pair: tuple[float, float]) -> float:
        return min(end for _, end in pair) - max(start for start, _ in pair)

    # Two half-GPU trials ran side by side on the one GPU ...
    assert max(overlap(a, b) for a, b in itertools.combinations(spans, 2)) >= 3, spans
    # ... and the third waited for a half to free up (timestamps are whole seconds: allow one).
    assert overlap(*spans) <= 1, spans
