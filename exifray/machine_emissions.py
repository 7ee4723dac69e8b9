"""One machine-mode CodeCarbon tracker per node for a whole sweep, next to the per-trial (process-mode) sum.

    start_trackers(name, country)        # the driver, before the trials: one per node that is up
    ensure_tracker(name, country)        # a trial, when it starts: its node's, if that node joined later
    nodes = stop_trackers(name)          # the driver, after the trials: each node's totals
    record(files, nodes, trials_kg)      # EXPERIMENT/machine_emissions.json; read back by `read_record`

Trials track their own process (`tracking_mode="process"`), so their sum leaves out the machine's idle draw,
Ray, the driver and whatever else ran. Each node's tracker is a zero-CPU detached actor pinned to the node (named
`exifray-machine:<sweep>:<node id>` in the `exifray` namespace), measuring the whole machine until the driver
stops it; a resumed sweep finds the trackers a killed driver left running and carries on with them. The record
holds every node's CodeCarbon totals, their sum, the trials' sum and the unattributed share
`1 - trials / machine`.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Final, TypedDict

if TYPE_CHECKING:
    from exifray.experiment_files import ExperimentFiles

logger = logging.getLogger(__name__)

RECORD_FILE: Final = "machine_emissions.json"
NAMESPACE: Final = "exifray"
PREFIX: Final = "exifray-machine"


class NodeTotals(TypedDict):
    """One node's machine-mode totals over one run of a sweep (`MachineTracker.stop`)."""

    node_id: str
    hostname: str
    started: float
    stopped: float
    emissions_kg: float
    energy_kwh: float
    cpu_energy_kwh: float
    gpu_energy_kwh: float
    ram_energy_kwh: float
    duration_s: float
    codecarbon: dict[str, str | int | float | None]  # CodeCarbon's own final figures


class Run(TypedDict):
    nodes: list[NodeTotals]


class Totals(TypedDict):
    machine_kg: float
    trials_kg: float
    unattributed_share: float  # NaN when the machine total is 0
    trials_exceed_machine: bool


class MachineRecord(Totals):
    """`machine_emissions.json`: every run of the sweep (a resumed sweep is another run) and the totals over them."""

    runs: list[Run]


class MachineTracker:
    """The actor: CodeCarbon in machine mode on this node from creation until `stop`."""

    def __init__(self, country: str):
        import ray
        from codecarbon import OfflineEmissionsTracker

        from exifray.emissions import share_cpu_probe

        share_cpu_probe()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.hostname = socket.gethostname()
        self.started = time.time()
        self.tracker = OfflineEmissionsTracker(
            country_iso_code=country, project_name="exifray-machine", tracking_mode="machine", output_methods=[],
            log_level="error", allow_multiple_runs=True, measure_power_secs=5)
        self.tracker.start()

    def stop(self) -> NodeTotals:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        return {"node_id": self.node_id, "hostname": self.hostname, "started": self.started, "stopped": time.time(),
                "emissions_kg": float(data.emissions), "energy_kwh": float(data.energy_consumed),
                "cpu_energy_kwh": float(data.cpu_energy), "gpu_energy_kwh": float(data.gpu_energy),
                "ram_energy_kwh": float(data.ram_energy), "duration_s": float(data.duration),
                "codecarbon": {k: v for k, v in asdict(data).items() if isinstance(v, str | int | float) or v is None}}


def _name(sweep: str, node_id: str) -> str:
    return f"{PREFIX}:{sweep}:{node_id}"


def _start(sweep: str, country: str, node_id: str) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(MachineTracker).options(
        name=_name(sweep, node_id), namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    actor.remote(country)


def start_trackers(sweep: str, country: str) -> int:
    """A tracker on every node that is up and can run trials; returns how many nodes."""
    import ray

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0]
    for node_id in nodes:
        _start(sweep, country, node_id)
    return len(nodes)


def ensure_tracker(sweep: str, country: str) -> None:
    """This node's tracker (a node that joined after the sweep started gets one with its first trial)."""
    import ray

    _start(sweep, country, ray.get_runtime_context().get_node_id())


def stop_trackers(sweep: str, timeout_s: float = 60) -> list[NodeTotals]:
    """Stop every node's tracker of this sweep and return their totals (a node that was lost has none)."""
    import ray

    names = [entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
             if entry["namespace"] == NAMESPACE and entry["name"].startswith(f"{PREFIX}:{sweep}:")]
    nodes = []
    for name in sorted(names):
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
            nodes.append(ray.get(actor.stop.remote(), timeout=timeout_s))
            ray.kill(actor)
        except (ray.exceptions.RayError, ValueError) as exc:  # a lost node's tracker: its energy is not known
            logger.warning("machine tracker %s gave no totals: %s", name, exc)
    return nodes


def summary(nodes: Sequence[NodeTotals], trials_kg: float) -> Totals:
    """The machine total against the trials' sum, and the share no trial accounts for."""
    machine_kg = float(sum(node["emissions_kg"] for node in nodes))
    share = 1.0 - trials_kg / machine_kg if machine_kg > 0 else math.nan
    return {"machine_kg": machine_kg, "trials_kg": float(trials_kg),
            "unattributed_share": min(1.0, max(0.0, share)) if math.isfinite(share) else math.nan,
            "trials_exceed_machine": bool(machine_kg > 0 and trials_kg > machine_kg)}


def record(files: ExperimentFiles, nodes: Sequence[NodeTotals], trials_kg: float) -> MachineRecord:
    """Add this run of the sweep (a resumed sweep is another run) to `machine_emissions.json`; returns the totals
    over every run."""
    import json

    previous = read_record(files)
    runs: list[Run] = [*(previous["runs"] if previous else []), {"nodes": list(nodes)}]
    every_node = [node for run in runs for node in run["nodes"]]
    document: MachineRecord = {"runs": runs, **summary(every_node, trials_kg)}
    files.write_bytes(RECORD_FILE, (json.dumps(document, indent=2, allow_nan=True) + "\n").encode("utf-8"))
    return document


def read_record(files: ExperimentFiles) -> MachineRecord | None:
    import json

    if not files.exists(RECORD_FILE):
        return None
    document: MachineRecord = json.loads(files.read_bytes(RECORD_FILE))
    return document


def describe(document: MachineRecord | None) -> str:
    """One line for `exifray leaderboard` and the report."""
    if not document:
        return "machine total: not recorded (a sweep from before it was measured)"
    nodes = {node["node_id"] for run in document["runs"] for node in run["nodes"]}
    share = document["unattributed_share"]
    text = (f"machine total {document['machine_kg'] * 1000:.3f} g CO2-eq over {len(nodes)} node(s) (CodeCarbon, "
            f"machine mode); trials {document['trials_kg'] * 1000:.3f} g; unattributed "
            f"{'n/a' if not math.isfinite(share) else f'{100 * share:.0f} %'}")
    if document.get("trials_exceed_machine"):
        text += " (the trials' process-mode estimates exceed the machine total: see docs/training.md)"
    return text
