"""Per-trial energy and CO2-eq with CodeCarbon's offline tracker (no network needed).

One tracker per trial, `tracking_mode="process"` so that concurrent trials on a node are each charged
their own process's share of CPU and RAM rather than the whole machine. Measurement is split into
segments (one per epoch, one for the test evaluation) with CodeCarbon's `start_task`/`stop_task`, and
the running totals are what each epoch reports as `emissions_kg` and `energy_kwh`.

Limits of the estimate: without RAPL access CodeCarbon estimates CPU power from the CPU's TDP and
load; GPU power is read per device, so trials sharing a GPU are each charged the whole device.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

logger = logging.getLogger(__name__)


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


class TrialEmissions:
    """Cumulative emissions of one trial, measured segment by segment. A context manager: leaving it (also by an
    exception) closes the open segment, so CodeCarbon's power-sampling thread never outlives the trial."""

    def __init__(self, country: str, *, output_dir: str | None = None, tracking_mode: str = "process",
                 project_name: str = "exifray"):
        from codecarbon import OfflineEmissionsTracker

        self._own_dir = output_dir is None  # a temporary folder of ours, removed on close
        directory = output_dir or tempfile.mkdtemp(prefix="exifray-codecarbon-")
        os.makedirs(directory, exist_ok=True)
        self._directory = directory
        self.country = country
        self.tracking_mode = tracking_mode
        self.totals = EmissionsTotals()
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=country, project_name=project_name, experiment_id=str(uuid.uuid4()),
            output_dir=directory, save_to_file=False, tracking_mode=tracking_mode, log_level="error",
            allow_multiple_runs=True, measure_power_secs=5)
        self._open: str | None = None

    def start_segment(self, name: str) -> None:
        if self._open is not None:
            self.stop_segment()
        self._tracker.start_task(name)
        self._open = name

    def stop_segment(self) -> EmissionsTotals:
        """Close the open segment and return the running totals."""
        if self._open is None:
            return self.totals
        data = self._tracker.stop_task(self._open)
        self._open = None
        if data is None:
            raise RuntimeError("CodeCarbon returned no data for a measured segment")
        self.totals.add(data)
        return self.totals

    def close(self) -> EmissionsTotals:
        self.stop_segment()
        if self._own_dir:
            shutil.rmtree(self._directory, ignore_errors=True)
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
