"""Ingest across nodes from and to S3 (moto's server on 127.0.0.1), submitted with `ray job submit` to a head
and two worker nodes started with `ray start` (token auth). The head offers no CPUs, so every decode task runs
on a worker; the nodes reach S3 through the endpoint and credentials in their environment, as instance
credentials would give them.

1. The golden input, uploaded to S3, ingested to S3: decode tasks ran on both workers and the dataset is the
   golden record.
2. The same with 31 blocks, and one worker's processes SIGKILLed while the state API shows a decode task
   running there: the job succeeds, the dataset is the golden record, no photo id appears twice, and the state
   API shows the decode attempt lost with the node and its retry.

To kill a task while it is in flight rather than just after it finished (the state API lags by about a
second), the test freezes the S3 server (SIGSTOP) from the moment the job's first tasks show until the kill:
no decode task can finish without S3, so what the state API shows running is running. The freeze lasts a
couple of seconds at most, below the S3 client's request timeout, and ends right after the kill.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from exifray.testing.golden import GOLDEN_SIZES, dataset_digest, golden_input
from exifray.testing.s3 import ServerEnv, moto_server, s3_filesystem

LocalCluster = Any  # tests/cluster/conftest.py
BUCKET = "exifray-cluster"
DECODE = "process_shard"  # the decode tasks' function (Ray Data names a task after the operators it runs)
AWS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[ServerEnv]:
    with moto_server(tmp_path) as env:
        yield env


def _start(cluster: LocalCluster, s3: dict[str, Any], fixtures: Path, tmp_path: Path) -> tuple[Any, Any, Any]:
    """The S3 input (the golden input uploaded) and a head plus two 1-CPU workers whose processes see S3."""
    fs = s3_filesystem(s3, BUCKET)
    golden_input(tmp_path / "input", fixtures / "jpeg")
    pafs.copy_files(str(tmp_path / "input"), f"{BUCKET}/input", destination_filesystem=fs)
    cluster.env.update({key: s3[key] for key in AWS})
    cluster.start_head(num_cpus=0)
    return fs, cluster.add_worker("worker-a", num_cpus=1), cluster.add_worker("worker-b", num_cpus=1)


def _ingest(out: str, shard_size: int) -> tuple[str, ...]:
    return ("jobs/ingest.py", f"s3://{BUCKET}/input/crawl", f"s3://{BUCKET}/input/folder", "--out", out,
            "--sizes", ",".join(map(str, GOLDEN_SIZES)), "--shard-size", str(shard_size))


def _golden(fixtures: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (fixtures / "golden" / "ingest.jsonl").read_text().splitlines()]


def _digest(fs: Any, prefix: str, local: Path) -> list[dict[str, Any]]:
    pafs.copy_files(f"{BUCKET}/{prefix}", str(local), source_filesystem=fs)
    return dataset_digest(local)


def _decode_tasks(cluster: LocalCluster) -> list[dict[str, Any]]:
    return [task for task in cluster.state("tasks") if DECODE in (task.get("name") or "")
            or DECODE in (task.get("func_or_class_name") or "")]


def test_ingest_reads_and_writes_s3_with_decode_tasks_on_both_workers(
        local_cluster: LocalCluster, s3: ServerEnv, fixtures: Path, tmp_path: Path) -> None:
    cluster = local_cluster
    fs, worker_a, worker_b = _start(cluster, s3, fixtures, tmp_path)
    job = cluster.submit(*_ingest(f"s3://{BUCKET}/dataset", shard_size=8))
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    assert "ingest: 61 photos written" in job.stdout, job.stdout[-3000:]
    finished = [task for task in _decode_tasks(cluster) if task["state"] == "FINISHED"]
    assert {task["node_id"] for task in finished} == {worker_a.node_id, worker_b.node_id}, finished
    digest = _digest(fs, "dataset", tmp_path / "copy")
    assert digest == _golden(fixtures)


def test_ingest_survives_a_worker_killed_with_decode_tasks_in_flight(
        local_cluster: LocalCluster, s3: ServerEnv, fixtures: Path, tmp_path: Path) -> None:
    cluster = local_cluster
    fs, worker_a, worker_b = _start(cluster, s3, fixtures, tmp_path)
    job = cluster.submit(*_ingest(f"s3://{BUCKET}/dataset", shard_size=2), wait=False)  # 31 blocks
    try:
        deadline, running = time.monotonic() + 240, []
        while not running:
            assert time.monotonic() < deadline and job.poll() is None, "no decode task was seen running on A"
            if not _decode_tasks(cluster):
                time.sleep(0.1)
                continue
            os.kill(s3.pid, signal.SIGSTOP)  # S3 frozen: the tasks in flight stay in flight
            try:
                frozen_until = time.monotonic() + 2.5
                while not running and time.monotonic() < frozen_until:
                    running = [t for t in _decode_tasks(cluster)
                               if t["state"] == "RUNNING" and t["node_id"] == worker_a.node_id]
                    time.sleep(0.1)
                if running:
                    worker_a.kill()
            finally:
                os.kill(s3.pid, signal.SIGCONT)
        output, _ = job.communicate(timeout=400)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0 and "succeeded" in output, output[-4000:]
    digest = _digest(fs, "dataset", tmp_path / "copy")
    ids = [row["photo_id"] for row in digest]
    assert len(ids) == len(set(ids)) == 61  # no photo twice
    assert digest == _golden(fixtures)
    card = json.loads((tmp_path / "copy" / "dataset.json").read_text())
    assert len(card["shards"]) == 31 and len({shard["path"] for shard in card["shards"]}) == 31
    # The attempts killed with the node failed; each was run again, on the surviving worker, and finished. The state
    # API learns of a dead node's attempts with a delay: wait for it to show them (the job has already finished).
    deadline = time.monotonic() + 120
    while True:
        tasks = _decode_tasks(cluster)
        lost = {t["task_id"] for t in tasks if t["node_id"] == worker_a.node_id and t["state"] == "FAILED"}
        retried = [t for t in tasks if t["task_id"] in lost and t["state"] == "FINISHED"]
        # A task seen running can have finished its last write just before S3 froze: what must hold is that an
        # attempt on A was lost in flight and every lost one ran again.
        if lost and {t["task_id"] for t in retried} == lost:
            break
        assert time.monotonic() < deadline, (running, [t for t in tasks if t["task_id"] in lost])
        time.sleep(0.5)
    assert {t["node_id"] for t in retried} == {worker_b.node_id}, retried
    print(f"\ningest node-loss: {len(lost)} decode task(s) lost with worker A and re-run on worker B; "
          f"{len(ids)} photos, each once")
