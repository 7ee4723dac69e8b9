"""A head and two worker nodes started with `ray start`; a worker node dies while a trial runs on it.

The sweep is submitted with `ray job submit` (its driver runs on the head, which offers no CPUs, so every
trial runs on a worker). Once a trial is complete and a trial on worker A has reported two epochs, worker A's
processes (raylet, workers, the trial) all get SIGKILL at once. FailureConfig reschedules the lost trial
on the surviving worker, where it continues from its last epoch's checkpoint; nothing already finished is
run again or changed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

LocalCluster = Any  # tests/cluster/conftest.py

SPACE = """
name: nodeloss
metric: val_f1_macro
mode: max
scheduler: none
max_concurrent: 2
max_failures: 2
resources: {cpus: 1, gpus: 0}
fixed:
  modality: image
  backbone: SmallCNN
  weights: none
  image_size: 32
  epochs: 25
  early_stopping_patience: 100
  batch_size: 16
params:
  learning_rate: {grid: [0.001, 0.002, 0.003, 0.004]}
"""


def _results(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # being written
            break
    return rows


def _complete(rows: list[dict[str, Any]]) -> bool:
    return any("test_f1_macro" in row for row in rows)


MAX_EPOCHS_BEFORE_KILL = 10  # of 25: at least 15 epochs (3 s or more) left for the kill to land


def test_a_sweep_survives_losing_a_worker_node(local_cluster: LocalCluster, tmp_path: Path) -> None:
    cluster = local_cluster
    cluster.start_head(num_cpus=0)
    worker_a = cluster.add_worker("worker-a", num_cpus=1)
    worker_b = cluster.add_worker("worker-b", num_cpus=1)
    assert cluster.alive_nodes() == 3

    ingest = cluster.submit("jobs/ingest.py", "--smoke-test", "--out", str(tmp_path / "ingest"))
    assert ingest.returncode == 0, (ingest.stdout + ingest.stderr)[-3000:]
    space = tmp_path / "nodeloss.yaml"
    space.write_text(SPACE)
    experiment = tmp_path / "experiments" / "nodeloss"
    sweep = cluster.submit("jobs/sweep.py", "--space", str(space), "--data", str(tmp_path / "ingest" / "dataset"),
                    "--storage-path", str(tmp_path / "experiments"), wait=False)
    try:
        # Wait for a finished trial and a trial on worker A with two epochs (two checkpoints) behind it and most
        # of its epochs ahead (an epoch takes ~0.2 s: a trial near its end would finish before the kill lands).
        deadline, victim, finished, placed = time.monotonic() + 240, None, {}, {}
        while victim is None:
            assert time.monotonic() < deadline and sweep.poll() is None, (
                f"no trial on worker A between epochs 2 and {MAX_EPOCHS_BEFORE_KILL} after one had finished: {placed}")
            time.sleep(0.1)
            trials = {folder.name: _results(folder) for folder in experiment.glob("trial_*")}
            finished = {name: rows for name, rows in trials.items() if _complete(rows)}
            for name, rows in trials.items():
                for node, worker in (("A", worker_a), ("B", worker_b)):
                    if rows and worker.owns(rows[-1]["pid"]):
                        placed[name] = node
                if (finished and not _complete(rows) and 2 <= len(rows) <= MAX_EPOCHS_BEFORE_KILL
                        and worker_a.owns(rows[-1]["pid"])):
                    victim = name
                    break
        epochs_before = len(_results(experiment / victim))
        assert set(placed.values()) == {"A", "B"}, placed  # the trials were spread over both workers
        snapshot = {name: (experiment / name / "result.json").read_text() for name in finished}
        worker_a.kill()
        output, _ = sweep.communicate(timeout=420)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0 and "succeeded" in output, output[-4000:]

    board = pd.read_csv(experiment / "leaderboard.csv")
    assert len(board) == 4 and set(board["status"]) == {"complete"}, board[["trial_id", "status", "error"]]
    # Finished results are untouched: those trials were not run again and their results did not change.
    for name, text in snapshot.items():
        assert (experiment / name / "result.json").read_text() == text, name

    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    failures = {f"trial_{trial.trial_id}": trial.run_metadata.num_failures for trial in analysis.trials}
    assert failures[victim] == 1 and sum(failures.values()) == 1, (victim, epochs_before, failures)
    final = _results(experiment / victim)[-1]
    # It continued from its last checkpoint (epoch 2 or later), not from epoch 1, and trained each epoch once.
    assert 2 <= final["resumed_from_epoch"] <= epochs_before + 1 and final["epochs"] == 25, final
    checkpoint = board.set_index("trial_id").loc[victim.removeprefix("trial_"), "checkpoint"]
    history = [json.loads(line) for line in (Path(checkpoint) / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == list(range(1, 26))
    print(f"\nnode-loss: trials started 4, rescheduled {sum(failures.values())} ({victim}, resumed after epoch "
          f"{final['resumed_from_epoch']}), finished {int((board['status'] == 'complete').sum())}, finished results "
          f"lost {len(snapshot) - sum((experiment / n / 'result.json').read_text() == t for n, t in snapshot.items())}"
          f" (of {len(snapshot)} finished before the kill)")
