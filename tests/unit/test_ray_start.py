"""`ray_start.retry_startup`: Ray's startup timeout (ray-project/ray#65983) is retried after the failed attempt's
processes are stopped; any other failure is not. The attempts here are real processes, not Ray's."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from exifray.ray_start import STARTS, _stop_new_children, retry_startup

TIMEOUT_TEXT = ("The current node timed out during startup. This could happen because some of the raylet failed to "
                "startup or the GCS has become overloaded.")  # Ray 2.60's exception, word for word


def _process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_startup_timeout_is_retried_after_what_the_attempt_left_is_stopped(caplog: pytest.LogCaptureFixture
                                                                             ) -> None:
    earlier = _process()  # a child from before the attempt (a server the caller runs): left alone
    left: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        if not left:
            left.append(_process())  # what a failed `ray.init` leaves running: its GCS, agents
            raise Exception(TIMEOUT_TEXT)
        return "started"

    try:
        with caplog.at_level(logging.WARNING, logger="exifray.ray_start"):
            assert retry_startup(start, _stop_new_children) == "started"
        left[0].wait(timeout=10)  # killed (it would sleep 2 minutes)
        assert earlier.poll() is None
        assert "ray-project/ray#65983" in caplog.text and f"attempt 1 of {STARTS}" in caplog.text
    finally:
        earlier.kill()
        earlier.wait()


def test_other_failures_are_not_retried_and_the_last_timeout_is_raised() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise ConnectionError("GCS refused the connection")

    with pytest.raises(ConnectionError):
        retry_startup(refused, _stop_new_children)
    assert len(calls) == 1

    def always_timing_out() -> None:
        calls.append(1)
        raise Exception(TIMEOUT_TEXT)

    calls.clear()
    with pytest.raises(Exception, match="timed out during startup"):
        retry_startup(always_timing_out, _stop_new_children)
    assert len(calls) == STARTS
