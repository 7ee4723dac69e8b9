"""A running sweep's heartbeat: `sweep_status.json` in the EXPERIMENT DIR, so that a watcher (`exifray leaderboard
--watch`) can tell a sweep that is running from one that ended and from one whose driver died.

    {"state": "running", "started": 1796..., "heartbeat": 1796..., "host": "node-1", "pid": 4242}

The driver rewrites it every HEARTBEAT_S while Tune runs and once more when the sweep ends (`finished`, or
`failed` when `fit` raised). A `running` file whose heartbeat is older than LOST_AFTER_S belongs to a driver that
died (killed, its machine gone): nothing else would stop the heartbeat without writing the end.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from types import TracebackType
from typing import Final

from exifray.experiment_files import ExperimentFiles

logger = logging.getLogger(__name__)

STATUS_FILE: Final = "sweep_status.json"
HEARTBEAT_S: Final = 5.0
LOST_AFTER_S: Final = 6 * HEARTBEAT_S  # a slow object store may delay a write or two, not six
RUNNING, FINISHED, FAILED, LOST, NOT_STARTED = "running", "finished", "failed", "lost", "not started"


class Heartbeat:
    """While the `with` block runs, the experiment's status says `running` with a fresh heartbeat; at its end,
    `finished` or `failed`. A write that fails is logged, never raised: the sweep does not depend on it."""

    def __init__(self, files: ExperimentFiles, every_s: float = HEARTBEAT_S):
        self.files, self.every_s = files, every_s
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="exifray-heartbeat", daemon=True)

    def _write(self, state: str) -> None:
        status = {"state": state, "started": self.started, "heartbeat": time.time(), "host": socket.gethostname(),
                  "pid": os.getpid()}
        try:
            self.files.write_bytes(STATUS_FILE, json.dumps(status).encode("utf-8"))
        except OSError as exc:
            logger.warning("could not write %s: %s", self.files.path(STATUS_FILE), exc)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write(RUNNING)

    def __enter__(self) -> Heartbeat:
        self._write(RUNNING)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._write(FINISHED if kind is None else FAILED)


def read_status(files: ExperimentFiles) -> dict[str, object] | None:
    """The experiment's status file, or None when there is none (yet) or it cannot be read."""
    try:
        if not files.exists(STATUS_FILE):
            return None
        status = json.loads(files.read_text(STATUS_FILE))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def verdict(status: dict[str, object] | None, now: float | None = None) -> str:
    """`running`, `finished`, `failed`, `lost` (a running status whose heartbeat stopped) or `not started`."""
    if status is None:
        return NOT_STARTED
    state = status.get("state")
    if state in (FINISHED, FAILED):
        return str(state)
    heartbeat = status.get("heartbeat")
    beat = float(heartbeat) if isinstance(heartbeat, int | float) else 0.0
    return LOST if (now if now is not None else time.time()) - beat > LOST_AFTER_S else RUNNING
