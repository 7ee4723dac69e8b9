"""Sweeps on real Ray Tune + Optuna with tiny Keras models: reports, outputs, failures, kill and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pandas as pd
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from exifray.analysis import analyse
from exifray.errors import ConfigError
from exifray.experiment import JOURNAL_FILE, LEADERBOARD_FILE, SWEEP_FILE, open_experiment
from exifray.space_file import load_space, parse_sweep
from exifray.sweep import run_sweep

if TYPE_CHECKING:
    from exifray.testing.mlflow_server import MlflowServer


def _space(name: str, **overrides: object):
    document = {
        "name": name, "seed": 1, "n_startup_trials": 10, "num_samples": 4, "max_concurrent": 2,
        "scheduler": "none", "resources": {"cpus": 1},
        "fixed": {"backbone": "TestTinyCNN", "epochs": 2, "batch_size": 32},
        "params": {"modality": {"choice": ["exif", "fusion"]}, "exif_tags": {"subset_of": ["ExposureTime", "ISO",
                                                                                           "Flash", "FNumber"]},
                   "fusion_width": {"choice": [8, 16]}, "learning_rate": {"loguniform": [0.0005, 0.005]}},
    }
    document.update(overrides)
    return parse_sweep({key: value for key, value in document.items() if value is not None})


def _journal_trials(experiment: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(experiment / JOURNAL_FILE)))
    return optuna.load_study(study_name=name, storage=storage).trials


def _results(experiment: Path) -> dict[str, pd.DataFrame]:
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(str(experiment)).trial_dataframes


@pytest.fixture(scope="module")
def four_trials(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    storage = tmp_path_factory.mktemp("experiments")
    result = run_sweep(_space("four"), small_dataset, storage_path=str(storage))
    return result, storage / "four"


def test_sweep_every_trial_reports_epochs_and_final_metrics(four_trials) -> None:
    result, experiment = four_trials
    frames = _results(experiment)
    assert len(frames) == 4
    for frame in frames.values():
        epochs = frame[frame["test_f1_macro"].isna()] if "test_f1_macro" in frame else frame
        assert len(epochs) >= 1 and epochs["val_f1_macro"].between(0, 1).all()
        final = frame.iloc[-1]
        assert 0 <= final["test_f1_macro"] <= 1 and final["emissions_kg"] > 0 and final["params"] > 0
        assert final["emissions_kg"] >= epochs["emissions_kg"].max()  # cumulative, test pass included
    assert list(result.leaderboard["status"]) == ["complete"] * 4


def test_sweep_writes_journal_leaderboard_tensorboard_and_checkpoints(four_trials) -> None:
    result, experiment = four_trials
    journal = _journal_trials(experiment, "four")
    assert len(journal) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in journal)
    board = pd.read_csv(experiment / LEADERBOARD_FILE)
    assert len(board) == 4 and list(board["rank"]) == [1, 2, 3, 4]
    assert board["val_f1_macro"].is_monotonic_decreasing
    by_id = {t.user_attrs["tune_trial_id"]: t for t in journal}
    for row in board.itertuples():
        assert by_id[row.trial_id].value == pytest.approx(row.val_f1_macro)  # journal and table agree
        assert (Path(row.checkpoint) / "model.keras").is_file() and (Path(row.checkpoint) / "settings.json").is_file()
        if row.modality == "exif":
            assert pd.isna(row.backbone) and pd.isna(row.fusion_width)
        assert set(row.exif_tags.split("+")) <= {"ExposureTime", "ISO", "Flash", "FNumber"}
    for trial_dir in experiment.glob("trial_*"):
        assert list(trial_dir.glob("events.out.tfevents.*")), f"no TensorBoard events in {trial_dir}"
    assert load_space(experiment / SWEEP_FILE).num_samples == 4


def test_sweep_refuses_to_overwrite_an_experiment(four_trials, small_dataset: Path) -> None:
    result, experiment = four_trials
    with pytest.raises(ConfigError, match="already exists.*--resume"):
        run_sweep(_space("four"), small_dataset, storage_path=str(experiment.parent))


def test_sweep_goes_on_when_a_configuration_always_fails(small_dataset: Path, tmp_path: Path) -> None:
    # 1e30 overflows float32 weights in the first steps: that trial diverges (NaN loss) whatever the seed.
    space = _space("failing", params={"modality": {"grid": ["exif"]}, "learning_rate": {"grid": [0.001, 1e30]}},
                   num_samples=None, max_concurrent=1)  # one worker: its second trial follows a failed one
    result = run_sweep(space, small_dataset, storage_path=str(tmp_path))
    board = result.leaderboard.set_index("learning_rate")
    assert board.loc[0.001, "status"] == "complete" and board.loc[0.001, "test_f1_macro"] > 0
    assert board.loc[1e30, "status"] == "error" and "diverged" in board.loc[1e30, "error"]
    states = sorted(t.state.name for t in _journal_trials(tmp_path / "failing", "failing"))
    assert states == ["COMPLETE", "FAIL"]


def test_checkpoint_every_n_epochs_keeps_the_last_checkpointed_epoch_and_the_final_result(
        small_dataset: Path, tmp_path: Path) -> None:
    space = _space("sparse", num_samples=None, checkpoint_every=3,
                   fixed={"modality": "image", "backbone": "TestTinyCNN", "weights": "none", "epochs": 7,
                          "early_stopping_patience": 100, "batch_size": 32},  # not a cheap (EXIF-only) phase
                   params={"learning_rate": {"grid": [0.001]}})
    assert space.config.checkpoint_every == 3 and parse_sweep(space.to_yaml()).config.checkpoint_every == 3
    result = run_sweep(space, small_dataset, storage_path=str(tmp_path))
    assert list(result.leaderboard["status"]) == ["complete"]
    (trial,) = (tmp_path / "sparse").glob("trial_*")
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5, 6, 7, 7]  # every epoch reported, then the final
    # Checkpoints after epochs 3 and 6 and the final one; Tune keeps the last two. Every epoch would have
    # made 8 checkpoints (checkpoint_000006 and _000007 kept).
    assert sorted(path.name for path in trial.glob("checkpoint_*")) == ["checkpoint_000001", "checkpoint_000002"]
    resume = json.loads((trial / "checkpoint_000001" / "resume.json").read_text())
    assert resume["epoch"] == 6 and [row["epoch"] for row in resume["history"]] == [1, 2, 3, 4, 5, 6]
    assert (trial / "checkpoint_000002" / "metrics.json").is_file()


def _count_finished(board: Path) -> int:
    try:
        return int(pd.read_csv(board)["status"].isin(["complete", "error"]).sum())
    except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
        return 0


def _live_board(experiment: Path) -> pd.DataFrame:
    return analyse(open_experiment(str(experiment))).tables["leaderboard"]


RESUME_TRIALS = 7


def test_sweep_resumes_after_the_driver_is_killed(small_dataset: Path, tmp_path: Path,
                                                  mlflow_tracking: MlflowServer) -> None:
    """...and its MLflow tracking still has one run per trial, under one parent (both drivers track it)."""
    from mlflow import MlflowClient

    from exifray.feature_cache import BUILT, HIT, FeatureCache
    from exifray.models.registry import create_backbone
    from exifray.testing.processes import kill_session
    from exifray.tracking import TRIAL_TAG

    space_file = tmp_path / "resume.yaml"
    # Its fusion trials stream their pixels from the shards (a streaming sweep resumes like any other), and train
    # their head phase on cached features of a backbone with a weights file: the resumed sweep must build none.
    weights = tmp_path / "TestTinyCNN.weights.h5"
    create_backbone("TestTinyCNN", 32).save_weights(weights)
    # 7 trials, 2 at a time: once 2 have ended, the other 5 take 3 rounds more, the slack in which the driver is killed
    # mid-sweep (Tune's saved state, which the kill waits for, can lag the leaderboard by a round of warm trials)
    document = _space("resume", num_samples=RESUME_TRIALS,
                      fixed={"backbone": "TestTinyCNN", "epochs": 4, "weights": str(weights)},
                      data={"stream": "always", "budget_mb": 0.01}).to_yaml()
    space_file.write_text(yaml.safe_dump(document))
    command = [sys.executable, "-m", "exifray", "sweep", "--space", str(space_file), "--data", str(small_dataset),
               "--storage-path", str(tmp_path), "--mlflow", mlflow_tracking.uri]
    # A private TMPDIR, short enough for the Unix sockets Ray puts under it: after the killed and the resumed
    # sweep, nothing of exifray's may be left in it (Ray keeps its own session logs in TMPDIR/ray by design).
    private = Path(tempfile.mkdtemp(prefix="xr-", dir="/tmp"))
    # Tune saves its experiment state (what `exifray leaderboard` and the resume read) at most every
    # max(10 s, 19 x the last save's time): on 2 busy cores one slow save pushed the next past the test's window
    # (a fresh-clone run saw 2 trials still `pending` there after 240 s). Every 2 s, as a user who resumes would ask.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "TMPDIR": str(private),
           "TUNE_GLOBAL_CHECKPOINT_S": "2"}
    board = tmp_path / "resume" / LEADERBOARD_FILE
    with open(tmp_path / "first.log", "wb") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 480  # (a fresh-clone run on 2 busy cores took 4.7 min for the whole sweep)
        cache = FeatureCache.under(str(tmp_path))
        while ((_count_finished(board) < 2 or not cache.entries()) and driver.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.5)
        # `exifray leaderboard` on the running sweep reads what Tune has saved so far, which can lag a moment
        # behind leaderboard.csv (the callback writes it as each trial ends): wait for Tune's state too.
        live = _live_board(tmp_path / "resume")
        while (live["status"] == "complete").sum() < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            live = _live_board(tmp_path / "resume")
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert 2 <= len(live) <= RESUME_TRIALS and (live["status"] == "complete").sum() >= 2
        assert set(live["status"]) <= {"complete", "running", "pending"} and live["trial_id"].is_unique
        os.kill(driver.pid, signal.SIGKILL)  # no clean shutdown: the driver dies mid-sweep
        driver.wait()
    before = pd.read_csv(board)
    finished_before = before[before["status"] == "complete"].set_index("trial_id")
    (entry,) = cache.entries()  # built before the kill by a fusion trial
    assert 2 <= len(finished_before) < RESUME_TRIALS
    # The Ray processes the killed driver started (its session: Ray gives workers process groups of their own) are
    # killed too and gone before the resume, so that whatever appears from now on is the resumed sweep's.
    assert kill_session(driver.pid) == []
    resumed_at = time.time()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = pd.read_csv(board).set_index("trial_id")
    assert len(after) == RESUME_TRIALS and set(after["status"]) == {"complete"}
    assert set(after["data_source"]) <= {"streamed from 3 shards, buffers of 1", "no pixels"}
    assert (after["data_source"] != "no pixels").any() and (after["modality"] == "fusion").any()
    assert cache.entries() == [entry]  # the resumed sweep built no entry and rewrote none
    resumed_fusion = after[(after["modality"] == "fusion") & ~after.index.isin(finished_before.index)]
    assert set(resumed_fusion["feature_cache"]) <= {HIT}
    assert set(after.loc[after["modality"] == "fusion", "feature_cache"]) <= {BUILT, HIT}
    for trial_id, row in finished_before.iterrows():  # kept, not re-run
        assert after.loc[trial_id, "test_f1_macro"] == pytest.approx(row["test_f1_macro"])
        assert after.loc[trial_id, "emissions_kg"] == pytest.approx(row["emissions_kg"])
    # The searcher kept its history: a fresh, equally seeded sampler would repeat the first draws.
    assert after["learning_rate"].nunique() == RESUME_TRIALS
    journal = _journal_trials(tmp_path / "resume", "resume")
    assert len(journal) == RESUME_TRIALS and {t.user_attrs["tune_trial_id"] for t in journal} == set(after.index)
    client = MlflowClient(mlflow_tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id], max_results=100)
    trial_ids = [run.data.tags[TRIAL_TAG] for run in runs]
    kept = [trial_id for trial_id in trial_ids if trial_id in after.index]
    assert trial_ids.count("") == 1 and sorted(kept) == sorted(after.index)  # one run per trial, no duplicate
    # A trial the killed driver had started but Tune had not saved is not in the resumed sweep: its run ends KILLED.
    lost = [run for run in runs if run.data.tags[TRIAL_TAG] not in {"", *after.index}]
    assert all(run.info.status == "KILLED" and "exifray.lost" in run.data.tags for run in lost)
    for run in runs:
        if run.data.tags[TRIAL_TAG] in after.index:
            assert run.info.status == "FINISHED"
            expected = after.loc[run.data.tags[TRIAL_TAG], "test_f1_macro"]
            assert run.data.metrics["test_f1_macro"] == pytest.approx(expected)
    left = {p.name: (p.stat().st_mtime, sorted(q.name for q in p.iterdir()) if p.is_dir() else []) for p in
            private.iterdir() if p.name not in ("ray", "_ray_lockfiles")}
    shutil.rmtree(private, ignore_errors=True)
    # Nothing of exifray's is left (its temporary folders are all named exifray-... or .tmp-..., trials' scratch is in
    # Ray's temp dir), and the resumed sweep, which ended cleanly, left nothing at all. Processes killed with SIGKILL
    # cannot remove the temporary folders their libraries had open: W&B's, which a driver makes on import (Ray's usage
    # tags import W&B's module in every driver that has Tune callbacks), or Keras' while a killed trial saved a model.
    assert [name for name in left if name.startswith(("exifray", ".tmp-"))] == [], left
    assert [name for name, (made, _) in left.items()
            if made >= resumed_at and not name.endswith(("wandb-media", "wandb-artifacts"))] == [], (resumed_at, left)


def test_sweep_data_reaches_trials_without_a_copy(small_dataset: Path) -> None:
    """The arrays come out of the object store as read-only views of shared memory, not private copies."""
    import ray

    from exifray.sweep import load_sweep_data

    data = load_sweep_data(_space("shared"), small_dataset)
    assert set(data) == {32}
    reference = ray.put(data)

    @ray.remote(num_cpus=1)
    def inspect(loaded: dict) -> tuple[bool, bool, int]:
        images = loaded[32].train.images
        return images.flags.writeable, images.flags.owndata, int(images.sum() % 1000)

    writeable, owndata, checksum = ray.get(inspect.remote(reference))
    assert not writeable and not owndata
    assert checksum == int(data[32].train.images.sum() % 1000)


def test_a_trial_finished_after_the_restored_checkpoint_is_found_not_rerun(tmp_path: Path) -> None:
    """The driver died after a trial's final checkpoint was saved but before Tune's state recorded it."""
    from ray import tune

    from exifray.checkpoints import finished_checkpoint

    trial = tmp_path / "trial_x"
    for index, files in ((1, ["resume.json"]), (2, ["resume.json"]), (3, ["metrics.json", "model.keras"])):
        (trial / f"checkpoint_{index:06d}").mkdir(parents=True)
        for name in files:
            (trial / f"checkpoint_{index:06d}" / name).write_text("{}")
    found = finished_checkpoint(tune.Checkpoint(str(trial / "checkpoint_000002")))
    assert found is not None and Path(found.path).name == "checkpoint_000003"
    found = finished_checkpoint(tune.Checkpoint(str(trial / "checkpoint_000003")))  # recorded, not marked done
    assert found is not None and Path(found.path).name == "checkpoint_000003"
    (trial / "checkpoint_000003" / "metrics.json").unlink()  # a later per-epoch checkpoint is not a final one
    assert finished_checkpoint(tune.Checkpoint(str(trial / "checkpoint_000001"))) is None


def test_a_trial_whose_recorded_checkpoint_was_deleted_restores_from_the_next_one(
        tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tune deletes the oldest checkpoint as it registers a newer one and saves its state after: a driver
    killed in between leaves a state naming a deleted checkpoint. The real trainable Tune builds restores from
    the oldest later checkpoint, with the training iteration it had there."""
    monkeypatch.chdir(tmp_path)  # the trainable moves into its trial's working folder, here the test's process
    from ray import tune
    from ray.train._internal.session import _TrainingResult, get_session
    from ray.train._internal.storage import StorageContext

    from exifray.sweep import build_trainable

    trial = tmp_path / "exp" / "trial_x"
    for index, epochs in ((2, 2), (3, 3)):  # checkpoint_000001 is gone; 000003 may be half-written
        (trial / f"checkpoint_{index:06d}").mkdir(parents=True)
        (trial / f"checkpoint_{index:06d}" / "resume.json").write_text(json.dumps({"history": [{}] * epochs}))
    trainable_cls = build_trainable(_space("gone"), {})
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="trial_x")

    def restored(name: str) -> tuple[int, str]:
        trainable = trainable_cls(config={}, storage=storage)
        try:
            trainable.restore(_TrainingResult(tune.Checkpoint(str(trial / name)), {"training_iteration": 1}))
            return trainable.iteration, Path(get_session().loaded_checkpoint.path).name
        finally:
            trainable.stop()

    assert restored("checkpoint_000001") == (2, "checkpoint_000002")
    assert restored("checkpoint_000002") == (1, "checkpoint_000002")  # there: restored as Tune recorded it
    with pytest.raises(ValueError, match="Could not recover from checkpoint"):
        restored("checkpoint_000004")  # nothing later to restore from: Tune's own error


def test_a_journal_reader_opened_before_the_sweep_follows_it_to_the_end(small_dataset: Path, tmp_path: Path) -> None:
    """What optuna-dashboard does: one JournalStorage, opened before the first trial, read again and again."""
    import threading

    journal = tmp_path / "follow" / JOURNAL_FILE
    journal.parent.mkdir(parents=True)
    reader = JournalStorage(JournalFileBackend(str(journal)))
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            studies = reader.get_all_studies()
            seen.append(len(reader.get_all_trials(studies[0]._study_id)) if studies else 0)
        except BaseException as exc:  # what a dashboard would show as an error
            errors.append(exc)

    def poll() -> None:
        while not done.is_set():
            read()
            done.wait(0.05)

    follower = threading.Thread(target=poll, daemon=True)
    follower.start()
    try:
        result = run_sweep(_space("follow", num_samples=3, max_concurrent=1), small_dataset, storage_path=str(tmp_path))
    finally:
        done.set()
        follower.join(timeout=30)
    read()  # one last read after the sweep has ended
    assert errors == [] and len(result.leaderboard) == 3
    assert seen[-1] == 3 and seen == sorted(seen)  # trials appear as they finish, none vanish or repeat
    assert len(_journal_trials(tmp_path / "follow", "follow")) == 3
