"""The slow tier's shared helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

JOBS = Path(__file__).parents[2] / "jobs"
Smoke = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def ray_address(ray_local: None) -> str:
    """The address of this test process's Ray (`ray_local`), for jobs that join it."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


@pytest.fixture
def smoke(ray_address: str) -> Smoke:
    """`smoke(JOB, timeout, join=True)`: `python jobs/JOB --smoke-test`, which must succeed; its finished process.

    A benchmark joins this test process's running Ray through RAY_ADDRESS and Ray's token, as it would join a cluster
    under `ray job submit`, instead of starting a Ray of its own (5 to 10 s of CPU each). `join=False` for a benchmark
    that measures the memory of the Ray it starts, or leaves a Serve application behind."""

    def run(job: str, timeout: int, join: bool = True) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        if join:
            env |= {"RAY_ADDRESS": ray_address, "RAY_AUTH_MODE": "token"}
        result = subprocess.run([sys.executable, str(JOBS / job), "--smoke-test"], capture_output=True, text=True,
                                timeout=timeout, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    return run
