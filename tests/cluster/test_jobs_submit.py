"""Every job in jobs/ submitted with `ray job submit` to a head started with `ray start --head` and token auth; on
the same head, which declares one GPU (Ray's scheduler takes the count on trust, so no GPU is needed), trials asking
for half a GPU share it two at a time and never three, although the CPUs would allow four. The trials themselves run
on the CPU here (TensorFlow finds no device). One head and one ingest job serve both tests."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

BIN = Path(sys.executable).parent
LocalCluster = Any  # tests/cluster/conftest.py
JOB_ID = re.compile(r"Job '(raysubmit_\w+)' submitted")


@pytest.fixture(scope="module")
def head(module_cluster: LocalCluster) -> LocalCluster:
    module_cluster.start_head(num_cpus=2, num_gpus=1)
    return module_cluster


@pytest.fixture(scope="module")
def ingested(head: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """`jobs/ingest.py --smoke-test` submitted once: the finished `ray job submit` process and its DATASET DIR."""
    out = tmp_path_factory.mktemp("ingest")
    return head.submit("jobs/ingest.py", "--smoke-test", "--out", str(out)), out / "dataset"


def _status(cluster: LocalCluster, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{cluster.dashboard}/api/jobs/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_job_smoke_test_runs_under_ray_job_submit_with_token_auth(head: LocalCluster,
                                                                          ingested: tuple[Any, Path],
                                                                          tmp_path: Path) -> None:
    cluster = head
    assert _status(cluster, {}) == 401  # no token: refused
    assert _status(cluster, {"Authorization": "Bearer wrong-token"}) in (401, 403)
    assert _status(cluster, {"Authorization": f"Bearer {cluster.token}"}) == 200
    tokenless = {**cluster.env, "HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    refused = cluster.submit("jobs/crawl.py", "--smoke-test", env=tokenless)
    assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr

    # The jobs go in at once, as a user's would (the head's job agent is up: the ingest job went through), and queue
    # for the head's CPUs. Besides the smoke tests, a sweep whose one trial fails (followed below).
    space = tmp_path / "failing.yaml"
    space.write_text("name: failing\nscheduler: none\nmax_failures: 0\nresources: {cpus: 1}\n"
                     "fixed: {modality: exif, epochs: 2, batch_size: 8}\n"
                     "params: {learning_rate: {grid: [0.01, 1.0e30]}}\n")
    running = {job: cluster.submit(f"jobs/{job}.py", "--smoke-test", "--out", str(tmp_path / job), wait=False)
               for job in ("crawl", "sweep", "leaderboard")}
    running["failing"] = cluster.submit("jobs/sweep.py", "--space", str(space), "--data", str(ingested[1]),
                                        "--storage-path", str(tmp_path / "failing"), wait=False)
    outputs = {job: process.communicate(timeout=600)[0] for job, process in running.items()}
    failing = outputs.pop("failing")
    logs = {"ingest": ingested[0].stdout + ingested[0].stderr, **outputs}
    assert ingested[0].returncode == 0 and "succeeded" in logs["ingest"], logs["ingest"][-3000:]
    for job, text in outputs.items():
        assert running[job].returncode == 0 and "succeeded" in text, (job, text[-3000:])
    assert cluster.token not in "".join(logs.values())
    job_ids = [found.group(1) for text in logs.values() if (found := JOB_ID.search(text))]

    crawl = tmp_path / "crawl" / "crawl"
    assert len((crawl / "photos.jsonl").read_text().splitlines()) == 60
    assert json.loads((crawl / "crawl_report.json").read_text())["downloaded"] == 60
    card = json.loads((ingested[1] / "dataset.json").read_text())
    assert sum(sum(per_class.values()) for per_class in card["counts"].values()) == 120
    board = pd.read_csv(tmp_path / "sweep" / "experiments" / "smoke" / "leaderboard.csv")
    assert len(board) == 1 and board.loc[0, "status"] == "complete" and board.loc[0, "test_f1_macro"] >= 0
    analysis = tmp_path / "leaderboard" / "analysis"
    assert len(pd.read_csv(analysis / "leaderboard.csv")) == 2 and (analysis / "report.html").stat().st_size > 0
    assert {p.suffix for p in analysis.iterdir()} == {".csv", ".md", ".json", ".parquet", ".html"}
    # the jobs ran on this cluster: Ray's job list has the four, each SUCCEEDED
    listed = subprocess.run([str(BIN / "ray"), "job", "list", "--address", cluster.dashboard], capture_output=True,
                            text=True, env=cluster.env, timeout=60)
    succeeded = {found.group(1) for job in listed.stdout.split("JobDetails(")[1:]
                 if "status=<JobStatus.SUCCEEDED" in job and (found := re.search(r"submission_id='(\w+)'", job))}
    assert len(set(job_ids)) == 4 and set(job_ids) <= set(succeeded), listed.stdout[-2000:]

    # Following a sweep's job shows each trial's epochs and a failed trial's whole error (the trials' own output
    # stays on their nodes): a trial whose loss diverges at learning rate 1e30, the other trains.
    job = JOB_ID.search(failing)
    assert job, failing[-3000:]
    followed = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", cluster.dashboard, job.group(1)],
                              capture_output=True, text=True, env=cluster.env, timeout=60)
    text = followed.stdout + followed.stderr
    assert len(re.findall(r"trial \w+ epoch [12] \(train\): val_loss [\d.]+ val_f1_macro [\d.]+", text)) == 2, \
        text[-3000:]  # the good trial's two epochs
    assert re.search(r"trial \w+ done: val_f1_macro [\d.]+ test_f1_macro [\d.]+ after 2 epochs", text), text[-3000:]
    failed = re.search(r"trial (\w+) failed:\n(.*?)TrialFailed: training loss is nan at epoch 1 \(train\): diverged",
                       text, re.DOTALL)
    assert failed and 'File "' in failed.group(2) and "end_epoch" in failed.group(2), text[-3000:]  # with traceback


GPU_SPACE = """
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


def test_half_gpu_trials_share_one_gpu_two_at_a_time(head: LocalCluster, ingested: tuple[Any, Path],
                                                       tmp_path: Path) -> None:
    cluster = head
    ingest = ingested[0]
    assert ingest.returncode == 0, (ingest.stdout + ingest.stderr)[-3000:]
    space = tmp_path / "halves.yaml"
    space.write_text(GPU_SPACE)
    sweep = cluster.submit("jobs/sweep.py", "--space", str(space), "--data", str(ingested[1]),
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
