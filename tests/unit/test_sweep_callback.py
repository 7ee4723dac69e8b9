"""The sweep callback on hand-made trial objects (what Tune hands it), without Ray: leaderboard, journal, states."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from exifray import schema
from exifray.experiment import JOURNAL_FILE, LEADERBOARD_FILE
from exifray.space_file import parse_space
from exifray.sweep_callback import SweepCallback


@dataclass
class _Checkpoint:
    path: str


@dataclass
class FakeTrial:
    """The parts of `ray.tune.experiment.Trial` the callback reads."""

    trial_id: str
    status: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: _Checkpoint | None = None
    error: Exception | None = None

    def get_pickled_error(self) -> Exception | None:
        return self.error

    def get_error(self) -> str | None:
        return None if self.error is None else str(self.error)


SPACE = parse_space({"name": "cb", "params": {"learning_rate": {"loguniform": [1e-4, 1e-2]},
                                              "modality": {"choice": ["exif", "fusion"]}}})


def _final(val: float, test: float) -> dict[str, Any]:
    return {schema.VAL_F1_MACRO: val, schema.TEST_F1_MACRO: test, schema.EMISSIONS_KG: 1e-6, schema.EPOCHS: 3,
            schema.FINAL_RESULT: True, "training_iteration": 4}


@pytest.fixture
def trials() -> list[FakeTrial]:
    return [
        FakeTrial("a", "TERMINATED", {"modality": "fusion", "learning_rate": 0.001}, _final(0.7, 0.68),
                  _Checkpoint("/x/a/checkpoint_000003")),
        FakeTrial("b", "TERMINATED", {"modality": "exif", "learning_rate": 0.003},
                  {schema.VAL_F1_MACRO: 0.5, "training_iteration": 1}),  # stopped by the scheduler
        FakeTrial("c", "ERROR", {"modality": "fusion", "learning_rate": 0.01}, {},
                  error=RuntimeError("line one\ntraining loss is nan at epoch 2: diverged")),
        FakeTrial("d", "RUNNING", {"modality": "exif", "learning_rate": 0.0002},
                  {schema.VAL_F1_MACRO: 0.6, "training_iteration": 2}),
    ]


def _callback(tmp_path: Path) -> SweepCallback:
    return SweepCallback(SPACE, str(tmp_path), "cb")


def test_results_track_best_validation_and_intermediate_values(tmp_path: Path, trials: list[FakeTrial]) -> None:
    callback = _callback(tmp_path)
    for iteration, value in ((1, 0.4), (2, 0.6), (3, 0.55)):
        callback.on_trial_result(iteration, trials, trials[3], {schema.VAL_F1_MACRO: value,
                                                               "training_iteration": iteration})
    callback.on_trial_result(4, trials, trials[3], {schema.VAL_F1_MACRO: math.nan, "training_iteration": 4})
    callback.on_trial_result(5, trials, trials[0], _final(0.7, 0.68))  # a final report is no intermediate value
    assert callback.best_val == {"d": 0.6, "a": 0.7}
    assert callback.intermediate == {"d": {1: 0.4, 2: 0.6, 3: 0.55}}


def test_trial_finished_writes_the_leaderboard_with_statuses_and_errors(tmp_path: Path,
                                                                       trials: list[FakeTrial]) -> None:
    callback = _callback(tmp_path)
    callback.best_val = {"b": 0.5, "d": 0.6}
    callback.on_trial_complete(1, trials, trials[0])
    board = pd.read_csv(tmp_path / "cb" / LEADERBOARD_FILE).set_index("trial_id")
    assert board["status"].to_dict() == {"a": "complete", "b": "stopped", "d": "running", "c": "error"}
    assert list(board.index) == ["a", "b", "d", "c"]  # complete, stopped, running, errored
    assert board.loc["c", "error"] == "RuntimeError: training loss is nan at epoch 2: diverged"
    assert board.loc["b", schema.VAL_F1_MACRO] == 0.5 and board.loc["a", "checkpoint"] == "/x/a/checkpoint_000003"
    assert board.loc["b", "modality"] == "exif" and board.loc["b", "learning_rate"] == 0.003


def test_journal_mirror_records_each_finished_trial_once_with_its_state(tmp_path: Path,
                                                                       trials: list[FakeTrial]) -> None:
    callback = _callback(tmp_path)
    for trial in trials[:2]:
        trial.status = "RUNNING"  # Tune calls the callback before it updates the trial's own status
        callback.on_trial_complete(1, trials, trial)
    callback.on_trial_error(1, trials, trials[2])
    callback.on_trial_error(1, trials, trials[2])  # reported twice: still one Optuna trial
    study = optuna.load_study(study_name="cb", storage=JournalStorage(JournalFileBackend(
        str(tmp_path / "cb" / JOURNAL_FILE))))
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert sorted(by_id) == ["a", "b", "c"]
    assert by_id["a"].state == optuna.trial.TrialState.COMPLETE and by_id["a"].values == [0.7]
    assert by_id["a"].params == {"modality": "fusion", "learning_rate": 0.001}
    assert by_id["b"].state == optuna.trial.TrialState.PRUNED
    assert by_id["c"].state == optuna.trial.TrialState.FAIL and "diverged" in by_id["c"].user_attrs["error"]


def test_experiment_end_rebuilds_the_journal_from_finished_trials(tmp_path: Path, trials: list[FakeTrial]) -> None:
    callback = _callback(tmp_path)
    callback.on_experiment_end(trials)
    study = optuna.load_study(study_name="cb", storage=JournalStorage(JournalFileBackend(
        str(tmp_path / "cb" / JOURNAL_FILE))))
    assert [t.user_attrs["tune_trial_id"] for t in study.trials] == ["a", "b", "c"]  # not the running one
    assert (tmp_path / "cb" / LEADERBOARD_FILE).is_file()
