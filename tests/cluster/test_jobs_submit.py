"""Every job in jobs/ submitted with `ray job submit` to a head started with `ray start --head` and token auth."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

BIN = Path(sys.executable).parent
LocalCluster = Any  # tests/cluster/conftest.py


def _status(cluster: LocalCluster, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{cluster.dashboard}/api/jobs/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_job_smoke_test_runs_under_ray_job_submit_with_token_auth(local_cluster: LocalCluster,
                                                                          tmp_path: Path) -> None:
    cluster = local_cluster
    cluster.start_head(num_cpus=2)
    assert _status(cluster, {}) == 401  # no token: refused
    assert _status(cluster, {"Authorization": "Bearer wrong-token"}) in (401, 403)
    assert _status(cluster, {"Authorization": f"Bearer {cluster.token}"}) == 200
    tokenless = {**cluster.env, "HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    refused = cluster.submit("jobs/crawl.py", "--smoke-test", env=tokenless)
    assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr

    logs = {}
    for job in ("crawl", "ingest", "sweep", "leaderboard"):
        result = cluster.submit(f"jobs/{job}.py", "--smoke-test", "--out", str(tmp_path / job))
        logs[job] = result.stdout + result.stderr
        assert result.returncode == 0 and "succeeded" in logs[job], logs[job][-3000:]
    assert cluster.token not in "".join(logs.values())

    crawl = tmp_path / "crawl" / "crawl"
    assert len((crawl / "photos.jsonl").read_text().splitlines()) == 60
    assert json.loads((crawl / "crawl_report.json").read_text())["downloaded"] == 60
    card = json.loads((tmp_path / "ingest" / "dataset" / "dataset.json").read_text())
    assert sum(sum(per_class.values()) for per_class in card["counts"].values()) == 120
    board = pd.read_csv(tmp_path / "sweep" / "experiments" / "smoke" / "leaderboard.csv")
    assert len(board) == 1 and board.loc[0, "status"] == "complete" and board.loc[0, "test_f1_macro"] >= 0
    analysis = tmp_path / "leaderboard" / "analysis"
    assert len(pd.read_csv(analysis / "leaderboard.csv")) == 2 and (analysis / "report.html").stat().st_size > 0
    assert {p.suffix for p in analysis.iterdir()} == {".csv", ".md", ".json", ".parquet", ".html"}
    # the jobs ran on this cluster: Ray's job list has the four, each SUCCEEDED
    listed = subprocess.run([str(BIN / "ray"), "job", "list", "--address", cluster.dashboard], capture_output=True,
                            text=True, env=cluster.env, timeout=60)
    assert listed.stdout.count("status=<JobStatus.SUCCEEDED") == 4, listed.stdout[-2000:]

    # Following a sweep's job shows each trial's epochs and a failed trial's whole error (the trials' own output
    # stays on their nodes): a trial whose loss diverges at learning rate 1e30, the other trains.
    space = tmp_path / "failing.yaml"
    space.write_text("name: failing\nscheduler: none\nmax_failures: 0\nresources: {cpus: 1}\n"
                     "fixed: {modality: exif, epochs: 2, batch_size: 8}\n"
                     "params: {learning_rate: {grid: [0.01, 1.0e30]}}\n")
    submitted = cluster.submit("jobs/sweep.py", "--space", str(space), "--data", str(tmp_path / "ingest" / "dataset"),
                               "--storage-path", str(tmp_path / "failing"))
    job = re.search(r"Job '(raysubmit_\w+)' submitted", submitted.stdout + submitted.stderr)
    assert job, (submitted.stdout + submitted.stderr)[-3000:]
    followed = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", cluster.dashboard, job.group(1)],
                              capture_output=True, text=True, env=cluster.env, timeout=60)
    text = followed.stdout + followed.stderr
    assert len(re.findall(r"trial \w+ epoch [12] \(train\): val_loss [\d.]+ val_f1_macro [\d.]+", text)) == 2, \
        text[-3000:]  # the good trial's two epochs
    assert re.search(r"trial \w+ done: val_f1_macro [\d.]+ test_f1_macro [\d.]+ after 2 epochs", text), text[-3000:]
    failed = re.search(r"trial (\w+) failed:\n(.*?)TrialFailed: training loss is nan at epoch 1 \(train\): diverged",
                       text, re.DOTALL)
    assert failed and 'File "' in failed.group(2) and "end_epoch" in failed.group(2), text[-3000:]  # with traceback
