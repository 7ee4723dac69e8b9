"""The processes of a session (`start_new_session=True`): Ray gives its workers process groups of their own but
leaves them in the session of whoever started Ray, so a session is what a test kills to kill a node or a driver
with everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def session_processes(session: int) -> list[int]:
    """The live processes of a session (zombies, whose parent died without reaping them, hold nothing)."""
    listing = subprocess.run(["ps", "-e", "-o", "pid=,sid=,stat="], capture_output=True, text=True, check=True).stdout
    return [int(pid) for pid, sid, stat in (line.split() for line in listing.splitlines())
            if int(sid) == session and not stat.startswith("Z")]


def kill_session(session: int, within_s: float = 60) -> list[int]:
    """SIGKILL every process of the session until none is alive (or `within_s` has passed); what is still alive."""
    deadline = time.monotonic() + within_s
    while (alive := session_processes(session)) and time.monotonic() < deadline:
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return session_processes(session)
