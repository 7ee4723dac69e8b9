"""Tracking on real servers: a sweep in a real `mlflow server` (sqlite, local artifacts) on 127.0.0.1 and in W&B's
offline runs, read back through MlflowClient and `wandb leet inspect`; the bundle registered as a pyfunc; a server
killed mid-sweep."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

from exifray import schema
from exifray.api import load_leaderboard, load_space, predict_photos, run_sweep
from exifray.cli import main as cli
from exifray.experiment import LEADERBOARD_FILE
from exifray.sweep import SweepResult
from exifray.testing.mlflow_server import KillServerAfterFirstTrial, MlflowServer, mlflow_server
from exifray.tracking import EXPERIMENT_TAG, PARENT_TAG, TRIAL_TAG

PROJECT = "exifray-tracking-test"


def _space(name: str, num_samples: int = 4, modalities: tuple[str, ...] = ("exif", "fusion"), epochs: int = 2
           ) -> object:
    return load_space({"name": name, "seed": 4, "num_samples": num_samples, "max_concurrent": 2, "scheduler": "none",
                       "resources": {"cpus": 1}, "fixed": {"backbone": "TestTinyCNN", "epochs": epochs,
                                                           "batch_size": 32},
                       "params": {"modality": {"choice": list(modalities)},
                                  "learning_rate": {"loguniform": [0.0005, 0.005]}}})


@pytest.fixture(scope="module")
def server(mlflow_tracking: MlflowServer) -> MlflowServer:
    return mlflow_tracking


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("wandb")
    saved = {key: os.environ.get(key) for key in ("WANDB_MODE", "WANDB_DIR")}
    os.environ.update({"WANDB_MODE": "offline", "WANDB_DIR": str(folder)})
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def tracked(small_dataset: Path, server: MlflowServer, wandb_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """One 4-trial sweep tracked in both, shared by the tests below."""
    storage = tmp_path_factory.mktemp("experiments")
    return run_sweep(_space("tracked"), small_dataset, storage_path=str(storage), mlflow=server.uri, wandb=PROJECT)


def _runs(uri: str, name: str) -> tuple[MlflowClient, object, list[object]]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [run for run in runs if run.data.tags.get(TRIAL_TAG) == ""]
    return client, parent, [run for run in runs if run.data.tags.get(TRIAL_TAG)]


def test_a_sweep_is_one_parent_run_with_a_child_run_per_trial_equal_to_the_leaderboard(
        tracked: SweepResult, server: MlflowServer, tmp_path: Path) -> None:
    client, parent, children = _runs(server.uri, "tracked")
    board = load_leaderboard(tracked).set_index("trial_id")
    assert len(board) == 4 and set(board["status"]) == {schema.STATUS_COMPLETE}
    assert parent.info.status == "FINISHED" and parent.data.tags[EXPERIMENT_TAG] == tracked.experiment_dir
    assert parent.data.params["num_samples"] == "4" and parent.data.params["fixed.backbone"] == "TestTinyCNN"
    assert sorted(run.data.tags[TRIAL_TAG] for run in children) == sorted(board.index)
    progress = {path.parent.name.removeprefix("trial_"): pd.read_csv(path)
                for path in Path(tracked.experiment_dir).glob("trial_*/progress.csv")}
    for run in children:
        trial_id = run.data.tags[TRIAL_TAG]
        row = board.loc[trial_id]
        assert run.data.tags[PARENT_TAG] == parent.info.run_id and run.info.status == "FINISHED"
        assert run.data.params["modality"] == row["modality"]
        assert float(run.data.params["learning_rate"]) == pytest.approx(row["learning_rate"])
        for metric in (schema.TEST_F1_MACRO, schema.VAL_F1_MACRO, schema.EMISSIONS_KG, schema.ENERGY_KWH,
                       schema.TEST_ACCURACY, schema.PARAMS):
            assert run.data.metrics[metric] == pytest.approx(row[metric], rel=1e-9), metric
        assert run.data.tags[f"exifray.{schema.FEATURE_CACHE}"] == row[schema.FEATURE_CACHE]
        assert run.data.tags["exifray.status"] == schema.STATUS_COMPLETE
        # the per-epoch history, step by step, is Tune's progress.csv for the trial
        epochs = progress[trial_id]
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, schema.VAL_LOSS)}
        expected = {int(step): value for step, value in zip(epochs["training_iteration"], epochs[schema.VAL_LOSS],
                                                            strict=True) if not math.isnan(value)}
        assert history == pytest.approx(expected) and len(history) >= 2
        final = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "final")}
        assert {"final/emissions.csv", "final/metrics.json"} <= final
        assert "final/model.keras" in final or {"final/head.keras", "final/backbone.json"} <= final
    emissions = client.download_artifacts(children[0].info.run_id, "final/emissions.csv", str(tmp_path))
    assert "emissions" in pd.read_csv(emissions).columns
    board_copy = client.download_artifacts(parent.info.run_id, LEADERBOARD_FILE, str(tmp_path))
    pd.testing.assert_frame_equal(pd.read_csv(board_copy), pd.read_csv(Path(tracked.experiment_dir) / LEADERBOARD_FILE))
    assert "analysis/report.html" in {a.path for a in client.list_artifacts(parent.info.run_id, "analysis")}


def _inspect(wandb: Path, run: Path) -> dict[str, Any]:
    """W&B's own reader of the run's transaction log (offline runs write no files/wandb-summary.json since
    wandb-core: wandb/wandb#9646). Read once: the sweep returns after each trial's helper has waited for W&B's
    service to write the run out (without that wait a run was seen unwritten, no project and no exit code)."""
    shown = subprocess.run([str(wandb), "leet", "inspect", "--summary", "--json", str(run)], capture_output=True,
                           text=True, timeout=120, check=True)
    record: dict[str, Any] = json.loads(shown.stdout)
    return record


def test_wandb_offline_runs_hold_the_leaderboard_final_metrics(tracked: SweepResult, wandb_dir: Path) -> None:
    board = load_leaderboard(tracked).set_index("trial_id")
    runs = sorted((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 4
    wandb = Path(sys.executable).parent / "wandb"
    seen = set()
    for run in runs:
        record = _inspect(wandb, run)
        summary, config = record["summary"], record["config"]
        trial_id = record["run_id"]
        seen.add(trial_id)
        assert record["project"] == PROJECT and record["state"] == "finished", (run, {
            key: value for key, value in record.items() if key not in ("summary", "config")})
        row = board.loc[trial_id]
        for metric in (schema.TEST_F1_MACRO, schema.VAL_F1_MACRO, schema.EMISSIONS_KG, schema.ENERGY_KWH):
            assert summary[metric] == pytest.approx(row[metric], rel=1e-9), metric
        assert config["modality"] == row["modality"] and config[schema.FEATURE_CACHE] == row[schema.FEATURE_CACHE]
    assert seen == set(board.index)


def test_no_tracking_setting_is_written_into_the_experiment(tracked: SweepResult, server: MlflowServer) -> None:
    """Tune pickles callbacks with the experiment: the trackers pickle as an inert placeholder."""
    address = server.uri.removeprefix("http://").encode()
    for path in Path(tracked.experiment_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert address not in data and PROJECT.encode() not in data, path


def test_export_best_registers_a_pyfunc_whose_predictions_equal_exifray_predict(
        tracked: SweepResult, server: MlflowServer, small_dataset: Path, tmp_path: Path) -> None:
    import mlflow

    bundle = tmp_path / "bundle"
    assert cli(["export-best", tracked.experiment_dir, "--out", str(bundle), "--mlflow-register", "photo-tagger",
                "--mlflow", server.uri]) == 0
    client, _, children = _runs(server.uri, "tracked")
    (version,) = client.search_model_versions("name = 'photo-tagger'")
    manifest = json.loads((bundle / "bundle.json").read_text())
    (trial_run,) = [run for run in children if run.data.tags[TRIAL_TAG] == manifest["trial_id"]]
    assert version.run_id == trial_run.info.run_id  # logged in the trial's own run
    photos = tmp_path / "photos"
    photos.mkdir()
    for source in sorted((small_dataset.parent / "crawl" / "images").rglob("*.jpg"))[:12]:
        shutil.copy(source, photos / source.name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    expected = predict_photos(bundle, photos)
    mlflow.set_tracking_uri(server.uri)
    model = mlflow.pyfunc.load_model(f"models:/photo-tagger/{version.version}")
    got = model.predict(pd.DataFrame({"path": [str(photos)]}))
    assert list(got["path"]) == list(expected["path"]) and len(got) == 13
    assert list(got["tags"]) == list(expected["tags"]) and list(got["error"]) == list(expected["error"])
    probabilities = [column for column in expected.columns if column.startswith("p_")]
    assert (got["error"] != "").sum() == 1
    pd.testing.assert_frame_equal(got[probabilities], expected[probabilities], rtol=1e-5)


def test_a_server_killed_mid_sweep_costs_the_sweep_almost_nothing(
        small_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with mlflow_server(tmp_path / "mlflow") as running, caplog.at_level(logging.WARNING, logger="exifray.tracking"):
        result = run_sweep(_space("unreachable", num_samples=3, modalities=("exif",), epochs=1), small_dataset,
                           storage_path=str(tmp_path / "experiments"), mlflow=running.uri,
                           callbacks=[KillServerAfterFirstTrial(running.process.pid)])
        assert running.process.poll() is not None  # it was killed during the sweep
    board = result.leaderboard
    assert len(board) == 3 and set(board["status"]) == {schema.STATUS_COMPLETE}  # the trials went on
    assert result.tracking_s <= 0.1 * result.wall_time_s, (result.tracking_s, result.wall_time_s)
    lost = [record.getMessage() for record in caplog.records if "is not fully tracked" in record.getMessage()]
    per_trial = Counter(message.split(" is not fully tracked")[0] for message in lost)
    assert lost and max(per_trial.values()) == 1, lost  # once per trial (or for the parent run), not per update


def test_a_resumed_sweep_ends_the_runs_its_killed_driver_left_running(
        tracked: SweepResult, server: MlflowServer, small_dataset: Path) -> None:
    """A driver killed after Tune saved a trial as ended, but before its sender ended the trial's run, leaves the run
    RUNNING; the resumed sweep does not run that trial again, and settles its run from Tune's record instead."""
    client, _, children = _runs(server.uri, "tracked")
    left = children[0]
    client.update_run(left.info.run_id, status="RUNNING")  # what the killed driver left
    resumed = run_sweep(_space("tracked"), small_dataset, storage_path=str(Path(tracked.experiment_dir).parent),
                        resume=True, mlflow=server.uri)
    board = load_leaderboard(resumed).set_index("trial_id")
    _, parent, after = _runs(server.uri, "tracked")
    assert sorted(run.info.run_id for run in after) == sorted(run.info.run_id for run in children)  # none made
    assert {run.info.status for run in after} == {"FINISHED"} and parent.info.status == "FINISHED"
    settled = client.get_run(left.info.run_id)
    assert settled.data.tags["exifray.status"] == schema.STATUS_COMPLETE
    assert settled.data.metrics[schema.TEST_F1_MACRO] == pytest.approx(board.loc[left.data.tags[TRIAL_TAG],
                                                                                schema.TEST_F1_MACRO], rel=1e-9)
