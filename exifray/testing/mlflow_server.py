"""A real `mlflow server` on 127.0.0.1 (sqlite backend, local artifact root), for the tracking tests.

    with mlflow_server(tmp_path) as server:     # server.uri: http://127.0.0.1:PORT
        run_sweep(..., mlflow=server.uri)
        run_sweep(..., mlflow=server.uri, callbacks=[KillServerAfterFirstTrial(server.process.pid)])

The server runs from the venv `make mlflow-server` builds (`.venv-mlflow`, its pins clash with the project's);
EXIFRAY_MLFLOW_SERVER names another `mlflow` executable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ray.tune import Callback

from exifray.testing.s3 import free_port, wait_until_answering

ROOT = Path(__file__).resolve().parents[2]


def server_executable() -> Path:
    named = os.environ.get("EXIFRAY_MLFLOW_SERVER")
    executable = Path(named) if named else ROOT / ".venv-mlflow" / "bin" / "mlflow"
    if not executable.is_file():
        raise RuntimeError(f"no MLflow server at {executable}: run `make mlflow-server` (or set EXIFRAY_MLFLOW_SERVER)")
    return executable


@dataclass
class MlflowServer:
    uri: str
    process: subprocess.Popen[bytes]
    log: Path
    root: Path

    def stop(self) -> None:
        """Kill the server and its uvicorn workers (its own process group; no clean shutdown)."""
        stop_group(self.process.pid)
        self.process.wait(timeout=30)


def stop_group(pid: int) -> None:
    """Kill a server started by `mlflow_server` from anywhere (a Tune callback holds only the pid): `mlflow server`
    runs uvicorn in a child process, which would keep answering if only the parent were killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class KillServerAfterFirstTrial(Callback):
    """A Tune callback that kills the server when the first trial completes (Tune pickles callbacks: it holds the
    server's pid only)."""

    def __init__(self, pid: int):
        self.pid, self.killed = pid, False

    def on_trial_complete(self, iteration: int, trials: list[object], trial: object, **_: object) -> None:
        if not self.killed:
            stop_group(self.pid)
            self.killed = True


@contextmanager
def mlflow_server(root: str | Path, timeout_s: float = 120) -> Iterator[MlflowServer]:
    """Start `mlflow server` with its database and artifacts under `root` and wait until /health answers."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "mlflow-server.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    # No job execution: MLflow 3's server otherwise starts a dozen huey consumers and job runners (for GenAI
    # scorers), each importing MLflow: seconds of CPU per start taken from the trials beside it, and never used.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(server_executable()), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder,
            start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    server = MlflowServer(uri, process, log, folder)
    try:
        wait_until_answering(f"{uri}/health", process, log, timeout_s)
        yield server
    finally:
        if process.poll() is None:
            server.stop()
