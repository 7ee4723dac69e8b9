"""An experiment saved by an older exifray (`tests/fixtures/saved-experiment.tar.gz`, written by
`tools/make_saved_experiment.py` before `sweep.py` was split into modules): today's code reads it, exports its
best trial and resumes it. Tune's state and the Optuna searcher pickle names such as `exifray.sweep._define_by_run`."""

from __future__ import annotations

import tarfile
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from exifray.analysis import analyse
from exifray.bundle import evaluate, export_best, load_model
from exifray.experiment import JOURNAL_FILE, LEADERBOARD_FILE, SWEEP_FILE, open_experiment
from exifray.space_file import load_sweep
from exifray.sweep import run_sweep

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "saved-experiment.tar.gz"


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path / "experiments", filter="data")
    return tmp_path / "experiments" / "saved"


def test_a_saved_experiment_is_read_exported_and_resumed(saved: Path, small_dataset: Path, tmp_path: Path) -> None:
    board = analyse(open_experiment(str(saved))).tables["leaderboard"]
    assert sorted(board["status"]) == ["complete", "pending"]  # the driver was killed during the second trial
    (first,) = board[board["status"] == "complete"].itertuples()
    export_best(str(saved), tmp_path / "bundle")
    scores = evaluate(load_model(tmp_path / "bundle"), small_dataset)  # the trial's own model, on its test split
    assert scores["test_f1_macro"] == pytest.approx(first.test_f1_macro, abs=1e-6)

    plan = load_sweep(saved / SWEEP_FILE)
    result = run_sweep(plan, small_dataset, storage_path=str(saved.parent), resume=True)
    after = pd.read_csv(saved / LEADERBOARD_FILE).set_index("trial_id")
    assert len(after) == 2 and set(after["status"]) == {"complete"}
    assert after.loc[first.trial_id, "test_f1_macro"] == pytest.approx(first.test_f1_macro)  # kept, not re-run
    assert len(result.leaderboard) == 2
    storage = JournalStorage(JournalFileBackend(str(saved / JOURNAL_FILE)))
    trials = optuna.load_study(study_name="saved", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert {t.user_attrs["tune_trial_id"] for t in trials} == set(after.index)
    assert after["learning_rate"].nunique() == 2  # the restored sampler went on from its history

