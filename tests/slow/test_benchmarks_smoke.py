"""The benchmark entrypoints in `jobs/` (crawl, checkpoint, predict, serve, ingest) run their `--smoke-test` and print
their figures and ratios; those that run sweeps are in test_benchmarks_sweep_smoke.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

JOBS = Path(__file__).parents[2] / "jobs"
Smoke = Any  # tests/slow/conftest.py: smoke(JOB, timeout, join) runs `python jobs/JOB --smoke-test`


def test_bench_crawl_smoke_prints_ratios_and_keeps_to_the_rate_limit() -> None:
    result = subprocess.run([sys.executable, str(JOBS / "bench_crawl.py"), "--smoke-test"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"concurrency +(\d+): +(\d+) photos, +([\d.]+) photos/s.*\( *([\d.]+)x concurrency 1\)",
                      result.stdout)
    assert [int(c) for c, *_ in rows] == [1, 4] and float(rows[0][3]) == 1.0, result.stdout
    share = re.search(r"= ([\d.]+) requests/s \(([\d.]+)% of the limit\)", result.stdout)
    assert share is not None, result.stdout
    # n requests pass an evenly spacing limiter in (n - 1) intervals: 30 photos (62 requests) allow 1/61 over
    assert float(share.group(2)) <= 100 * 62 / 61 + 0.5, result.stdout


def test_bench_checkpoint_smoke_prints_both_runs_and_the_ratio(smoke: Smoke) -> None:
    result = smoke("bench_checkpoint.py", timeout=300)
    baseline = re.search(r"baseline, no checkpoints +: +([\d.]+) s/epoch +\(1\.00x\)", result.stdout)
    saved = re.search(r"checkpoint after every epoch +: +([\d.]+) s/epoch +\(([\d.]+)x\)", result.stdout)
    save = re.search(r"one save \(state \+ copy\) +: +([\d.]+) ms, ([\d.]+) MB per checkpoint", result.stdout)
    assert baseline and saved and save, result.stdout
    assert float(saved.group(2)) == pytest.approx(float(saved.group(1)) / float(baseline.group(1)), abs=0.01)
    assert float(save.group(1)) > 0 and float(save.group(2)) > 0.1  # a model with its optimizer state


def test_bench_predict_smoke_prints_the_loop_and_the_command_with_ratios(smoke: Smoke) -> None:
    result = smoke("bench_predict.py", timeout=600)
    assert re.search(r"plain loop, 1 process .*: +[\d.]+ photos/s +\(1\.00x\)", result.stdout), result.stdout
    whole = re.search(r"exifray predict, whole command +: +([\d.]+) photos/s +\(([\d.]+)x", result.stdout)
    assert whole and float(whole.group(1)) > 0 and float(whole.group(2)) > 0, result.stdout


def test_bench_serve_smoke_prints_each_concurrency_with_and_without_batching(smoke: Smoke) -> None:
    result = smoke("bench_serve.py", timeout=600, join=False)  # a Serve app of its own
    rows = re.findall(r"^ +(\d+) \| +([\d.]+) +([\d.]+) +([\d.]+) \| +([\d.]+) +([\d.]+) +([\d.]+) \| ([\d.]+)x$",
                      result.stdout, re.MULTILINE)
    assert [int(row[0]) for row in rows] == [1, 8, 32], result.stdout
    assert all(float(value) > 0 for row in rows for value in row[1:]), result.stdout


def test_bench_ingest_smoke_prints_the_pool_the_pipeline_and_their_ratio(smoke: Smoke) -> None:
    result = smoke("bench_ingest.py", timeout=600)
    pool = re.search(r"process pool, \d+ workers, same shards : +([\d.]+) photos/s", result.stdout)
    whole = re.search(r"exifray ingest, whole command +: +([\d.]+) photos/s +\(([\d.]+)x the pool", result.stdout)
    assert pool and whole and float(pool.group(1)) > 0 and float(whole.group(2)) > 0, result.stdout
    assert re.search(r"Ray start \(reported apart\) +: +[\d.]+ s", result.stdout), result.stdout
    assert re.search(r"decode\+EXIF \d+ %, Parquet write \d+ %", result.stdout), result.stdout
