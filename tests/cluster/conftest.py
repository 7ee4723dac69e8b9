"""Real Ray clusters on 127.0.0.1, started the way users start them (`ray start`), with token authentication.

Each node runs `ray start --block` as the leader of its own session with its own temp dir, HOME (so the
token file is the test's, never the user's ~/.ray) and ports. Ray puts each worker process in a process group
of its own but leaves it in the node's session, so stopping a node kills exactly the processes of its session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exifray.testing.processes import session_processes

BIN = Path(sys.executable).parent
REPO = Path(__file__).parents[2]
NO_AGENT = "No available agent to submit job"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    def __init__(self, process: subprocess.Popen, log: Path):
        self.process, self.log = process, log
        self.node_id = ""  # Ray's id, once the node has joined

    def owns(self, pid: int) -> bool:
        """Whether the process belongs to this node (raylet, its workers, trial processes)."""
        try:
            return os.getsid(pid) == self.process.pid
        except ProcessLookupError:
            return False

    def kill(self) -> None:
        """SIGKILL every process of the node's session at once: raylet, workers, trials (and on the head GCS
        and dashboard), as when a machine goes away."""
        for pid in session_processes(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)


class LocalCluster:
    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.env = {**os.environ, "HOME": str(self.home), "RAY_AUTH_MODE": "token",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
        self.env.pop("RAY_ADDRESS", None)
        generated = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=self.env,
                                   capture_output=True, text=True, timeout=60, check=True)
        self.token = (self.home / ".ray" / "auth_token").read_text().strip()
        assert self.token and self.token in generated.stdout
        self._taken: set[int] = set()
        self.gcs_port, self.dashboard_port = self.port(), self.port()
        self.nodes: list[Node] = []

    def port(self) -> int:
        """A free port no other component of this cluster was given: the OS can hand the same free port out twice
        in a row, and Ray refuses to start a node whose components share one."""
        while (port := free_port()) in self._taken or 20000 <= port < 23000:
            pass  # nor one in the worker port ranges given below
        self._taken.add(port)
        return port

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str]) -> Node:
        temp_dir = self.root / name
        log = self.root / f"{name}.log"
        ports = ["--node-manager-port", str(self.port()), "--object-manager-port", str(self.port()),
                 "--metrics-export-port", str(self.port()), "--dashboard-agent-listen-port", str(self.port()),
                 "--runtime-env-agent-port", str(self.port()), "--min-worker-port", str(20000 + 1000 * len(self.nodes)),
                 "--max-worker-port", str(20999 + 1000 * len(self.nodes))]
        with log.open("wb") as out:
            process = subprocess.Popen([str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
                                        "--temp-dir", str(temp_dir), *ports, *args], stdout=out,
                                       stderr=subprocess.STDOUT, env=self.env, start_new_session=True, cwd=self.root)
        node = Node(process, log)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: int, num_gpus: int | None = None) -> Node:
        """The head; `num_gpus` declares GPUs to Ray's scheduler (bookkeeping: Ray does not check they exist)."""
        gpus = ["--num-gpus", str(num_gpus)] if num_gpus is not None else []
        node = self._start("head", ["--head", "--port", str(self.gcs_port), "--dashboard-host", "127.0.0.1",
                                    "--dashboard-port", str(self.dashboard_port), "--include-dashboard", "true",
                                    "--ray-client-server-port", str(self.port()), "--num-cpus", str(num_cpus), *gpus])
        self.wait_for(lambda: self._dashboard_up(), node, "the dashboard")
        self.wait_for(lambda: len(self._alive_ids()) == 1, node, "the head in the state API")
        (node.node_id,) = self._alive_ids()
        return node

    def add_worker(self, name: str, num_cpus: int) -> Node:
        """A worker node joining the head (`ray start --address`), with the same token; `node.node_id` is its
        Ray node id (the one alive node the cluster had not listed before)."""
        known = {other.node_id for other in self.nodes}
        node = self._start(name, ["--address", f"127.0.0.1:{self.gcs_port}", "--num-cpus", str(num_cpus)])
        self.wait_for(lambda: self.alive_nodes() == len(self.nodes), node, f"worker node {name}")
        self.wait_for(lambda: len(self._alive_ids() - known) == 1, node, f"worker node {name} in the state API")
        (node.node_id,) = self._alive_ids() - known
        return node

    def _alive_ids(self) -> set[str]:
        return {row["node_id"] for row in self.state("nodes") if row["state"] == "ALIVE"}

    def state(self, kind: str, **filters: str) -> list[dict[str, Any]]:
        """Ray's state API over the dashboard's REST endpoint (`ray list KIND --filter key=value`), with the token."""
        import json
        import urllib.parse
        import urllib.request

        query = [("limit", "10000"), ("detail", "1")]
        for key, value in filters.items():
            query += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
        request = urllib.request.Request(f"{self.dashboard}/api/v0/{kind}?{urllib.parse.urlencode(query)}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return list(json.load(answer)["data"]["result"]["result"])

    def alive_nodes(self) -> int:
        import json
        import urllib.request

        request = urllib.request.Request(f"{self.dashboard}/nodes?view=summary",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                summary = json.load(answer)["data"]["summary"]
        except (OSError, KeyError, ValueError):
            return 0
        return sum(1 for node in summary if node.get("raylet", {}).get("state") == "ALIVE")

    def submit(self, *entrypoint: str, env: dict[str, str] | None = None, wait: bool = True) -> Any:
        """`ray job submit --runtime-env jobs/runtime_env.yaml -- python ENTRYPOINT...` from the repository, as a
        user runs it: the finished process (output captured), or with `wait=False` the running one."""
        command = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard, "--runtime-env",
                   "jobs/runtime_env.yaml", "--", "python", *entrypoint]
        if not wait:
            return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env or self.env, cwd=REPO)
        deadline = time.monotonic() + 120
        while True:
            finished = subprocess.run(command, capture_output=True, text=True, env=env or self.env, cwd=REPO,
                                      timeout=400)
            # A head that has just started may have no job agent yet: Ray refuses the job ("try again later"), as it
            # would a user's, and nothing ran. Once the agent is up, a job goes through.
            if NO_AGENT not in finished.stdout + finished.stderr or time.monotonic() > deadline:
                return finished
            time.sleep(1)

    def _dashboard_up(self) -> bool:
        import urllib.request

        request = urllib.request.Request(f"{self.dashboard}/api/version",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def wait_for(self, ready, node: Node, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if node.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"{what} did not come up:\n{node.log.read_text()[-3000:]}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()

    def leftover_processes(self) -> list[str]:
        """Live processes of the test's nodes (killed ones whose parent died stay as zombies when nothing reaps
        them, as in a container without an init process; they hold nothing)."""
        listing = subprocess.run(["ps", "-e", "-o", "pid=,sid=,stat=,args="], capture_output=True, text=True).stdout
        sessions = {str(node.process.pid) for node in self.nodes}
        return [line for line in listing.splitlines()
                if (str(self.root) in line or line.split()[1] in sessions) and not line.split()[2].startswith("Z")]


@contextlib.contextmanager
def running_cluster() -> Iterator[LocalCluster]:
    """A cluster with no nodes yet; on the way out every node is stopped and none of its processes may be left."""
    root = Path(tempfile.mkdtemp(prefix="exr-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    cluster = LocalCluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        deadline = time.monotonic() + 30
        while cluster.leftover_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster.leftover_processes() == [], cluster.leftover_processes()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def local_cluster() -> Iterator[LocalCluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def module_cluster() -> Iterator[LocalCluster]:
    """One cluster for a module's tests (each module starts its nodes)."""
    with running_cluster() as cluster:
        yield cluster
