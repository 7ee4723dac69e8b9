"""The benchmark entrypoints in `jobs/` run their `--smoke-test` and print their figures and ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

JOBS = Path(__file__).parents[2] / "jobs"
SPREAD_OVER_WORKERS = True  # each test is its own process: nothing shared, so xdist may split the module


def _smoke(job: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """`python jobs/JOB --smoke-test`, which must succeed."""
    result = subprocess.run([sys.executable, str(JOBS / job), "--smoke-test"], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


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


def test_bench_checkpoint_smoke_prints_both_runs_and_the_ratio() -> None:
    result = subprocess.run([sys.executable, str(JOBS / "bench_checkpoint.py"), "--smoke-test"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    baseline = re.search(r"baseline, no checkpoints +: +([\d.]+) s/epoch +\(1\.00x\)", result.stdout)
    saved = re.search(r"checkpoint after every epoch +: +([\d.]+) s/epoch +\(([\d.]+)x\)", result.stdout)
    save = re.search(r"one save \(state \+ copy\) +: +([\d.]+) ms, ([\d.]+) MB per checkpoint", result.stdout)
    assert baseline and saved and save, result.stdout
    assert float(saved.group(2)) == pytest.approx(float(saved.group(1)) / float(baseline.group(1)), abs=0.01)
    assert float(save.group(1)) > 0 and float(save.group(2)) > 0.1  # a model with its optimizer state


def test_bench_feature_cache_smoke_prints_both_routes_their_ratios_and_equal_f1() -> None:
    result = _smoke("bench_feature_cache.py", timeout=600)
    epoch = re.search(r"head epoch ([\d.]+) s through the backbone, ([\d.]+) s on cached features: ([\d.]+)x",
                      result.stdout)
    phase = re.search(r"whole head phase ([\d.]+) s vs ([\d.]+) s including the ([\d.]+) s build: ([\d.]+)x",
                      result.stdout)
    f1 = re.search(r"val macro F1 ([\d.]+) through the backbone, ([\d.]+) cached \(feature_cache=built\)",
                   result.stdout)
    assert epoch and phase and f1, result.stdout
    assert float(epoch.group(3)) == pytest.approx(float(epoch.group(1)) / float(epoch.group(2)), rel=0.05)
    assert float(epoch.group(3)) > 1  # even the tiny smoke backbone is cheaper to skip than to run
    assert float(f1.group(1)) == pytest.approx(float(f1.group(2)), abs=0.005)


def test_bench_sweep_speed_smoke_runs_both_sweeps_and_compares_them() -> None:
    result = _smoke("bench_sweep_speed.py", timeout=900)
    runs = re.findall(r"feature_cache (off|auto): (\d+) trials, (\d+) trial-epochs, (\d+) cache entries built",
                      result.stdout)
    assert [(mode, int(trials), int(built)) for mode, trials, _, built in runs] == [("off", 4, 0), ("auto", 4, 2)]
    assert re.search(r"sweep wall time: \d+ s off, \d+ s on: [\d.]+x", result.stdout), result.stdout
    worst = re.search(r"largest \|val_f1_macro off - on\| over the (\d+) trials with equal epochs: ([\d.]+)",
                      result.stdout)
    assert worst and int(worst.group(1)) >= 1 and float(worst.group(2)) <= 0.01, result.stdout
    outcomes = re.findall(r"epochs, (\w+)\)$", result.stdout, re.MULTILINE)  # stopped trials say it too
    assert len(outcomes) == 4 and set(outcomes) <= {"built", "hit"} and "built" in outcomes, result.stdout


def test_bench_predict_smoke_prints_the_loop_and_the_command_with_ratios() -> None:
    result = _smoke("bench_predict.py", timeout=600)
    assert re.search(r"plain loop, 1 process .*: +[\d.]+ photos/s +\(1\.00x\)", result.stdout), result.stdout
    whole = re.search(r"exifray predict, whole command +: +([\d.]+) photos/s +\(([\d.]+)x", result.stdout)
    assert whole and float(whole.group(1)) > 0 and float(whole.group(2)) > 0, result.stdout


def test_bench_serve_smoke_prints_each_concurrency_with_and_without_batching() -> None:
    result = _smoke("bench_serve.py", timeout=600)
    rows = re.findall(r"^ +(\d+) \| +([\d.]+) +([\d.]+) +([\d.]+) \| +([\d.]+) +([\d.]+) +([\d.]+) \| ([\d.]+)x$",
                      result.stdout, re.MULTILINE)
    assert [int(row[0]) for row in rows] == [1, 8, 32], result.stdout
    assert all(float(value) > 0 for row in rows for value in row[1:]), result.stdout


def test_bench_ingest_smoke_prints_the_pool_the_pipeline_and_their_ratio() -> None:
    result = _smoke("bench_ingest.py", timeout=600)
    pool = re.search(r"process pool, \d+ workers, same shards : +([\d.]+) photos/s", result.stdout)
    whole = re.search(r"exifray ingest, whole command +: +([\d.]+) photos/s +\(([\d.]+)x the pool", result.stdout)
    assert pool and whole and float(pool.group(1)) > 0 and float(whole.group(2)) > 0, result.stdout
    assert re.search(r"Ray start \(reported apart\) +: +[\d.]+ s", result.stdout), result.stdout
    assert re.search(r"decode\+EXIF \d+ %, Parquet write \d+ %", result.stdout), result.stdout


def test_bench_stream_smoke_prints_each_run_the_memory_roles_and_the_epoch_ratio() -> None:
    result = _smoke("bench_stream.py", timeout=600)
    runs = re.findall(r"(small dataset, in memory|big dataset, streamed|big dataset, in memory)[^:]*: whole sweep "
                      r"+(\d+) MiB above idle Ray; trial process +(\d+) \(private +(\d+)\), driver +(\d+);.*\[(.+)\]",
                      result.stdout)
    assert [run[0] for run in runs] == ["small dataset, in memory", "big dataset, streamed",
                                        "big dataset, in memory"], result.stdout
    assert [run[5] for run in runs][1:] == ["streamed from 10 shards, buffers of 1", "memory"], result.stdout
    assert all(int(run[2]) > 0 and int(run[3]) > 0 and int(run[4]) > 0 for run in runs)  # every role was sampled
    bounds = re.findall(r"memory bound, (whole sweep|trial process): streamed (\d+) MiB vs the small dataset's (\d+) "
                        r"\+ budget ([\d.]+) = (\d+) MiB \(([\d.]+)x\)", result.stdout)
    epoch = re.search(r"streamed ([\d.]+) s vs in memory ([\d.]+) s \(([\d.]+)x\)", result.stdout)
    assert [bound[0] for bound in bounds] == ["whole sweep", "trial process"] and epoch, result.stdout
    for _, streamed, small, budget, limit, ratio in bounds:
        assert int(limit) == pytest.approx(int(small) + float(budget), abs=1)
        assert float(ratio) == pytest.approx(int(streamed) / int(limit), abs=0.01)
    assert float(epoch.group(3)) == pytest.approx(float(epoch.group(1)) / float(epoch.group(2)), abs=0.01)
