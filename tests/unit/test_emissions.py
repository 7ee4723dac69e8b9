"""TrialEmissions with the real CodeCarbon offline tracker: segments add up, the context manager closes."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import pytest

from exifray.emissions import TrialEmissions


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        hashlib.sha256(b"x" * 4096).digest()


def test_segments_accumulate_into_running_totals(tmp_path: Path) -> None:
    with TrialEmissions("DEU", output_dir=str(tmp_path)) as emissions:
        emissions.start_segment("epoch1")
        _busy(0.3)
        first = emissions.stop_segment().emissions_kg
        emissions.start_segment("epoch2")
        _busy(0.3)
        totals = emissions.close()
    assert 0 < first < totals.emissions_kg
    assert totals.energy_kwh > 0 and totals.duration_s >= 0.5
    assert totals.energy_kwh == pytest.approx(totals.cpu_energy_kwh + totals.gpu_energy_kwh + totals.ram_energy_kwh,
                                              rel=1e-6)
    assert not emissions.is_open


def test_an_error_inside_closes_the_open_segment_and_propagates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="training broke"), TrialEmissions("DEU", output_dir=str(tmp_path)) as em:
        em.start_segment("epoch1")
        _busy(0.1)
        raise ValueError("training broke")
    assert not em.is_open and em.totals.duration_s > 0


def test_no_temporary_folder_is_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    with TrialEmissions("DEU") as emissions:
        emissions.start_segment("test")
        _busy(0.05)
    assert list(tmp_path.iterdir()) == []
