"""The slow tier's shared helpers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

JOBS = Path(__file__).parents[2] / "jobs"
Smoke = Callable[[str, int], "subprocess.CompletedProcess[str]"]


@pytest.fixture
def smoke() -> Smoke:
    """`smoke(JOB, timeout)`: `python jobs/JOB --smoke-test`, which must succeed; its finished process."""

    def run(job: str, timeout: int) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, str(JOBS / job), "--smoke-test"], capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    return run
