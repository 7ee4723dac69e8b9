"""moto's S3 server on 127.0.0.1 in its own process, for the tests that read and write `s3://` as users do.

    with moto_server(log_dir) as env:          # env: AWS_ENDPOINT_URL and credentials, as a user sets them
                                                # (env.pid: the server's process, to freeze it with SIGSTOP)
        fs = s3_filesystem(env, "bucket")       # the test's own view of the server (creates the bucket)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answering(url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Poll `url` until the server answers; fail with its log's tail if it exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{url} did not start answering: {log.read_text()[-2000:]}") from None
            time.sleep(0.3)


class ServerEnv(dict[str, str]):
    """The environment for child processes that use the server, and the server's process id (`pid`)."""

    pid: int


@contextmanager
def moto_server(log_dir: str | Path, timeout_s: float = 60) -> Iterator[ServerEnv]:
    """Start `python -m moto.server` and wait until it answers; yields the environment for child processes."""
    port = free_port()
    log = Path(log_dir) / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{endpoint}/moto-api/", server, log, timeout_s)
        env = ServerEnv({**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "exifray-test",
                         "AWS_SECRET_ACCESS_KEY": "exifray-test", "AWS_DEFAULT_REGION": "us-east-1",
                         "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
        env.pop("RAY_ADDRESS", None)
        env.pid = server.pid
        yield env
    finally:
        server.kill()
        server.wait(timeout=30)


def s3_filesystem(env: dict[str, str], bucket: str) -> pafs.S3FileSystem:
    """The server seen with explicit credentials (nothing from this process's environment); creates `bucket`."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                           region=env["AWS_DEFAULT_REGION"], endpoint_override=env["AWS_ENDPOINT_URL"],
                           allow_bucket_creation=True)
    fs.create_dir(bucket)
    return fs
