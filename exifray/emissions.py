"""Per-trial energy and CO2-eq with CodeCarbon's offline tracker (no network needed).

One tracker per trial, `tracking_mode="process"` so that concurrent trials on a node are each charged
their own process's share of CPU and RAM rather than the whole machine. Measurement is split into
segments (one per epoch, one for the test evaluation) with CodeCarbon's `start_task`/`stop_task`, and
the running totals are what each epoch reports as `emissions_kg` and `energy_kwh`.

CodeCarbon's own files are kept in the tracker's folder (a trial's: see `train.run_trial`): each measured
segment is appended to `emissions_tasks.csv` as it ends (CodeCarbon's columns, with `task_name` first), so a
trial killed mid-way keeps what it measured, and the sum of its `emissions` column is the trial's
`emissions_kg`; when the tracker stops, CodeCarbon appends the attempt's whole-run row to `emissions.csv`
(its standard file: hardware, tracking mode, PUE, region, version). How CodeCarbon obtained the power (RAPL,
a TDP estimate from CPU load, NVML), which it logs but does not write, is `power_source`.

Limits of the estimate: without RAPL access CodeCarbon estimates CPU power from the CPU's TDP and
load; GPU power is read per device, so trials sharing a GPU are each charged the whole device.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from exifray import schema
from exifray.fsutil import atomic_write_json

logger = logging.getLogger(__name__)

TASKS_FILE = schema.CODECARBON_TASKS_FILE
CODECARBON_FILES = schema.CODECARBON_FILES


class _Measured(Protocol):
    """What CodeCarbon's `EmissionsData` offers for one measured task."""

    emissions: float | None
    energy_consumed: float | None
    cpu_energy: float | None
    gpu_energy: float | None
    ram_energy: float | None
    duration: float | None


@dataclass
class EmissionsTotals:
    emissions_kg: float = 0.0
    energy_kwh: float = 0.0
    cpu_energy_kwh: float = 0.0
    gpu_energy_kwh: float = 0.0
    ram_energy_kwh: float = 0.0
    duration_s: float = 0.0

    def add(self, data: _Measured) -> None:
        self.emissions_kg += float(data.emissions or 0.0)
        self.energy_kwh += float(data.energy_consumed or 0.0)
        self.cpu_energy_kwh += float(data.cpu_energy or 0.0)
        self.gpu_energy_kwh += float(data.gpu_energy or 0.0)
        self.ram_energy_kwh += float(data.ram_energy or 0.0)
        self.duration_s += float(data.duration or 0.0)


def share_cpu_probe() -> None:
    """Make py-cpuinfo's probe run once per machine boot instead of once per process.

    CodeCarbon names the CPU (to look up its TDP) with `cpuinfo.get_cpu_info()`, which runs a Python subprocess
    probing CPUID: 1.1 s of wall time and 0.6 s of CPU here, in every process that starts a tracker (every fresh
    trial worker, every node's machine tracker). Its answer, `json.loads` of that subprocess's JSON, is the same for
    every process on the machine until it reboots: the first process keeps the JSON in the user's cache
    (`~/.cache/exifray/cpuinfo-<cpuinfo version>-<boot id>.json`, `XDG_CACHE_HOME` respected) and the others read
    it. Where there is no boot id (not Linux) or the cache cannot be written, every process probes as before."""
    import cpuinfo

    if getattr(cpuinfo.get_cpu_info, "exifray_shared", False):
        return
    path = cpu_probe_file(cpuinfo.CPUINFO_VERSION_STRING)
    if path is None:
        return
    probe = cpuinfo.get_cpu_info

    def get_cpu_info() -> dict[str, Any]:
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(kept, dict) and kept:
                return kept
        except (OSError, ValueError):
            pass  # none yet, or damaged: probe again and rewrite it
        info: dict[str, Any] = probe()
        if info:
            try:
                atomic_write_json(path, info)
            except OSError as exc:
                logger.debug("could not keep the CPU probe in %s: %s", path, exc)
        return info

    get_cpu_info.exifray_shared = True  # type: ignore[attr-defined]
    cpuinfo.get_cpu_info = get_cpu_info


def cpu_probe_file(version: str) -> Path | None:
    """Where `share_cpu_probe` keeps this boot's CPU probe (None: no boot id, or no home to cache in)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except (OSError, RuntimeError):
        return None
    return cache / "exifray" / f"cpuinfo-{version}-{boot}.json" if boot else None


class TrialEmissions:
    """Cumulative emissions of one trial, measured segment by segment. A context manager: leaving it (also by an
    exception) closes the open segment and stops the tracker, so CodeCarbon's power-sampling thread never outlives
    the trial. `output_dir`: where CodeCarbon's files go (None: a temporary folder, removed on close)."""

    def __init__(self, country: str, *, output_dir: str | os.PathLike[str] | None = None,
                 tracking_mode: str = "process", project_name: str = "exifray"):
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.output_methods.base_output import OutputMethod

        share_cpu_probe()
        self._own_dir = output_dir is None  # a temporary folder of ours, removed on close
        directory = str(output_dir) if output_dir is not None else tempfile.mkdtemp(prefix="exifray-codecarbon-")
        os.makedirs(directory, exist_ok=True)
        self.directory = Path(directory)
        for name in CODECARBON_FILES:  # an earlier attempt's leftovers: a resume restores the checkpoint's rows
            (self.directory / name).unlink(missing_ok=True)
        self.country = country
        self.tracking_mode = tracking_mode
        self.totals = EmissionsTotals()
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=country, project_name=project_name, experiment_id=str(uuid.uuid4()),
            output_dir=directory, output_methods=[OutputMethod.CSV], on_csv_write="append",
            tracking_mode=tracking_mode, log_level="error", allow_multiple_runs=True, measure_power_secs=5)
        self._tracker.start()  # a run of its own, so that stop() writes the attempt's row to emissions.csv
        self._open: str | None = None
        self._closed = False
        self.final_files: dict[str, bytes] = {}  # CodeCarbon's files when the tracker stopped

    def start_segment(self, name: str) -> None:
        if self._open is not None:
            self.stop_segment()
        self._tracker.start_task(name)
        self._open = name

    def stop_segment(self) -> EmissionsTotals:
        """Close the open segment, append its row to `emissions_tasks.csv` and return the running totals."""
        if self._open is None:
            return self.totals
        name, self._open = self._open, None
        data = self._tracker.stop_task(name)
        if data is None:
            raise RuntimeError("CodeCarbon returned no data for a measured segment")
        self.totals.add(data)
        self._append_task_row(name, data)
        return self.totals

    def _append_task_row(self, name: str, data: Any) -> None:
        row = {"task_name": name, **asdict(data)}  # CodeCarbon's EmissionsData is a dataclass: its CSV columns
        path = self.directory / TASKS_FILE
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow({key: repr(value) if isinstance(value, float) else value for key, value in row.items()})

    @property
    def power_source(self) -> str:
        """How CodeCarbon measures each device here, e.g. `CPU: cpu_load (TDP estimate); RAM: estimate` or
        `CPU: intel_rapl; GPU: nvml` (it logs this but does not write it to its CSV)."""
        parts = []
        for hardware in getattr(self._tracker, "_hardware", []):  # no public API for it in CodeCarbon 3.3
            kind = type(hardware).__name__
            mode = getattr(hardware, "_mode", None)
            if kind == "GPU":
                parts.append("GPU: nvml")
            elif kind == "RAM":
                parts.append("RAM: estimate from memory size" if getattr(hardware, "_force_ram_power", None) is None
                             else "RAM: given power")
            elif mode in ("cpu_load", "constant"):
                generic = " (generic TDP)" if getattr(hardware, "_is_generic_tdp", False) else ""
                parts.append(f"{kind}: {mode} (TDP estimate{generic})")
            else:
                parts.append(f"{kind}: {mode or 'measured'}")
        order = {"CPU": 0, "GPU": 1, "RAM": 2}
        return "; ".join(sorted(parts, key=lambda part: order.get(part.split(":")[0], 3))) or "unknown"

    def files(self) -> dict[str, bytes]:
        """CodeCarbon's files as they are now (what a checkpoint and the final folder carry)."""
        return {name: (self.directory / name).read_bytes() for name in CODECARBON_FILES
                if (self.directory / name).is_file()}

    def restore_files(self, folder: str | os.PathLike[str]) -> None:
        """Continue the record a checkpoint carries (a resumed attempt appends to its rows)."""
        for name in CODECARBON_FILES:
            source = Path(folder) / name
            if source.is_file():
                shutil.copyfile(source, self.directory / name)

    def close(self) -> EmissionsTotals:
        if self._closed:
            return self.totals
        self.stop_segment()
        self._closed = True
        self._tracker.stop()  # appends this attempt's whole-run row to emissions.csv
        self.final_files = self.files()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.totals

    @property
    def is_open(self) -> bool:
        """Whether a segment is being measured."""
        return self._open is not None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.close()
            return
        try:  # training failed: close what is open without hiding the original error
            self.close()
        except Exception as exc:
            logger.warning("CodeCarbon could not close its measurement after %s: %s", kind.__name__, exc)
