"""TrialEmissions with the real CodeCarbon offline tracker: segments add up, the context manager closes."""

from __future__ import annotations

import hashlib
import re
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


CODECARBON_COLUMNS = {"timestamp", "project_name", "run_id", "duration", "emissions", "energy_consumed",
                      "cpu_model", "tracking_mode", "pue", "codecarbon_version", "country_iso_code"}


def test_codecarbon_files_are_kept_and_a_resumed_attempt_appends(tmp_path: Path) -> None:
    import pandas as pd

    first = tmp_path / "attempt1"
    with TrialEmissions("DEU", output_dir=first) as emissions:
        for epoch in (1, 2):
            emissions.start_segment(f"train-epoch{epoch}")
            _busy(0.1)
            emissions.stop_segment()
            if epoch == 1:
                checkpoint = emissions.files()  # what a checkpoint saved after epoch 1 carries
                saved_totals = emissions.totals.emissions_kg
        assert re.fullmatch(r"CPU: \w+.*; RAM: .+", emissions.power_source)  # e.g. cpu_load (TDP estimate)
    tasks = pd.read_csv(first / "emissions_tasks.csv")
    assert tasks["task_name"].tolist() == ["train-epoch1", "train-epoch2"]
    assert set(tasks.columns) >= CODECARBON_COLUMNS
    assert abs(tasks["emissions"].sum() - emissions.totals.emissions_kg) < 1e-12
    run = pd.read_csv(first / "emissions.csv")  # CodeCarbon's own whole-run row, written when the tracker stopped
    assert len(run) == 1 and set(run.columns) >= CODECARBON_COLUMNS and run.loc[0, "tracking_mode"] == "process"
    assert set(emissions.final_files) == {"emissions.csv", "emissions_tasks.csv"}

    # The trial was killed after epoch 2 was measured but before it was checkpointed: a new attempt resumes from
    # the epoch-1 checkpoint, whose rows it continues.
    saved = tmp_path / "checkpoint"
    saved.mkdir()
    for name, data in checkpoint.items():
        (saved / name).write_bytes(data)
    second = tmp_path / "attempt2"
    with TrialEmissions("DEU", output_dir=second) as resumed:
        resumed.totals.emissions_kg = saved_totals
        resumed.restore_files(saved)
        resumed.start_segment("train-epoch2")
        _busy(0.1)
    tasks = pd.read_csv(second / "emissions_tasks.csv")
    assert tasks["task_name"].tolist() == ["train-epoch1", "train-epoch2"] and tasks["run_id"].nunique() == 2
    assert abs(tasks["emissions"].sum() - resumed.totals.emissions_kg) < 1e-12


def _tracker_in_a_new_process(folder: Path, cache: Path) -> str:
    """The CPU model CodeCarbon wrote in the emissions.csv of a tracker started in a fresh Python process."""
    import os
    import subprocess
    import sys

    import pandas as pd

    code = ("import sys; from exifray.emissions import TrialEmissions\n"
            "with TrialEmissions('DEU', output_dir=sys.argv[1]): pass")
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, timeout=120,
                   env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    return str(pd.read_csv(folder / "emissions.csv").loc[0, "cpu_model"])


def test_the_cpu_probe_runs_once_per_boot_and_codecarbon_names_the_cpu_from_it(tmp_path: Path) -> None:
    import json

    import cpuinfo

    from exifray.emissions import cpu_probe_file

    cache = tmp_path / "cache"
    kept = cpu_probe_file(cpuinfo.CPUINFO_VERSION_STRING)
    assert kept is not None  # Linux: a boot id
    kept = cache / kept.relative_to(kept.parents[1])
    model = _tracker_in_a_new_process(tmp_path / "first", cache)
    probe = json.loads(kept.read_text())
    assert probe["brand_raw"] == model and list(kept.parent.iterdir()) == [kept]  # no temporary file left
    # The next process reads the kept probe instead of probing: CodeCarbon names the CPU it says.
    kept.write_text(json.dumps({**probe, "brand_raw": "exifray test CPU"}))
    assert _tracker_in_a_new_process(tmp_path / "second", cache) == "exifray test CPU"
    # A damaged probe file is probed again and rewritten.
    kept.write_text("{not json")
    assert _tracker_in_a_new_process(tmp_path / "third", cache) == model
    assert json.loads(kept.read_text()) == probe
