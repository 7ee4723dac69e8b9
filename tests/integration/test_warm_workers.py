"""Warm trial workers on real Ray Tune: a trial on a reused worker equals the same trial on a fresh one, reuse
never fails a trial, and workers retire after `max_trials_per_worker` trials."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from exifray import schema
from exifray.config import TrialConfig
from exifray.space import SweepPlan
from exifray.space_file import parse_sweep
from exifray.sweep import build_trainable, load_sweep_data, run_sweep, trial_dirname

TAGS = ["ExposureTime", "ISO", "Flash", "FNumber"]
# The trial compared: fusion over TestTinyCNN at 32 px. The one before it on the same worker differs in
# modality, backbone and size, and every trial streams its pixels from the shards.
# (SmallCNN, not TestTinyMobileNet: tracing a MobileNetV2's training step takes ~20 s here, twice per run.)
OTHER = {"modality": "image", "backbone": "SmallCNN", "image_size": 40, "learning_rate": 0.003}
COMPARED = {"modality": "fusion", "backbone": "TestTinyCNN", "image_size": 32, "learning_rate": 0.002}


@pytest.fixture(scope="module")
def two_size_dataset(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    from exifray.testing.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("warm"), photos=160, seed=5, image_size=48, sizes=(32, 40),
                        shard_size=40)


def _plan(name: str, **settings: Any) -> SweepPlan:
    document: dict[str, Any] = {
        "name": name, "max_concurrent": 1, "scheduler": "none", "resources": {"cpus": 2}, "warm_workers": True,
        "data": {"stream": "always"},
        "fixed": {"epochs": 2, "batch_size": 32, "fusion_width": 8, "exif_tags": TAGS, "seed": 7,
                  "early_stopping_patience": 5},
        "params": {"modality": {"choice": ["image", "fusion"]}, "backbone": {"choice": ["TestTinyCNN", "SmallCNN"]},
                   "image_size": {"choice": [32, 40]}, "learning_rate": {"choice": [0.002, 0.003]}}}
    document.update(settings)
    return parse_sweep(document)


def _run_points(plan: SweepPlan, dataset: Path, storage: Path, points: list[dict[str, Any]],
                stop: Callable[[str, Mapping[str, Any]], bool] | None = None) -> pd.DataFrame:
    """The points in order, one at a time, on exifray's trainable (one Tune trial each); returns Tune's results.
    Trials take every CPU: with room to spare, Tune starts the next trial's worker before the last one ends."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from exifray import warm

    trainable = build_trainable(plan, load_sweep_data(plan, dataset))
    tuner = tune.Tuner(
        trainable, param_space={**plan.space.fixed, **points[0]},
        tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=points),
                                    num_samples=len(points), max_concurrent_trials=1,
                                    reuse_actors=plan.config.reuse_workers, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=plan.name, storage_path=str(storage), stop=stop, verbose=0))
    with warm.retiring_workers():
        grid = tuner.fit()
    assert not grid.errors
    frames = []
    for result in grid:
        frame = result.metrics_dataframe.copy()
        frame["trial_path"] = result.path
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _final(frame: pd.DataFrame, worker_trial: int) -> pd.Series:
    rows = frame[(frame[schema.WORKER_TRIAL] == worker_trial) & frame[schema.FINAL_RESULT].fillna(False).astype(bool)]
    assert len(rows) == 1
    return rows.iloc[0]


def _epochs(frame: pd.DataFrame, worker_trial: int) -> pd.DataFrame:
    rows = frame[(frame[schema.WORKER_TRIAL] == worker_trial) & frame[schema.FINAL_RESULT].isna()]
    return rows[[schema.EPOCH, schema.VAL_LOSS, schema.VAL_F1_MACRO, schema.VAL_F1_MICRO,
                 schema.VAL_ACCURACY]].reset_index(drop=True)


def _val_probabilities(final: pd.Series, config: TrialConfig, dataset: Path) -> np.ndarray:
    import keras

    from exifray.data.dataset import load_arrays
    from exifray.train import model_inputs

    checkpoint = Path(final["trial_path"]) / final["checkpoint_dir_name"]
    data = load_arrays(dataset, 32)
    model = keras.saving.load_model(checkpoint / schema.MODEL_FILE, compile=False)
    return np.asarray(model.predict(model_inputs(data.val, config, data.encoder.subset(config.exif_tags)), verbose=0))


def _task_names(final: pd.Series) -> list[str]:
    path = Path(final["trial_path"]) / final["checkpoint_dir_name"] / schema.CODECARBON_TASKS_FILE
    with path.open(encoding="utf-8") as stream:
        return [row["task_name"] for row in csv.DictReader(stream)]


@pytest.fixture(scope="module")
def fresh_run(two_size_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _run_points(_plan("fresh"), two_size_dataset, tmp_path_factory.mktemp("fresh"), [COMPARED])


@pytest.fixture(scope="module")
def warm_run(two_size_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """One worker runs OTHER to its end, COMPARED, OTHER stopped by Tune after its first report (mid-fit, as ASHA
    stops a trial), and COMPARED again."""
    def stop(_trial_id: str, result: Mapping[str, Any]) -> bool:
        return bool(result[schema.WORKER_TRIAL] == 3 and result[schema.EPOCH] >= 1)

    return _run_points(_plan("warm"), two_size_dataset, tmp_path_factory.mktemp("warm-run"),
                       [OTHER, COMPARED, OTHER, COMPARED], stop=stop)


def test_the_trial_before_ran_on_the_same_worker_streamed_or_was_stopped(warm_run: pd.DataFrame) -> None:
    assert warm_run["pid"].nunique() == 1  # one worker process ran all four
    assert _final(warm_run, 1)[schema.DATA_SOURCE].startswith("streamed")
    assert len(_epochs(warm_run, 1)) == 2
    stopped = warm_run[warm_run[schema.WORKER_TRIAL] == 3]
    assert len(stopped) == 1 and stopped[schema.FINAL_RESULT].isna().all()  # stopped after its first epoch


@pytest.mark.parametrize("worker_trial", [2, 4], ids=["after-a-finished-trial", "after-a-stopped-trial"])
def test_a_trial_on_a_reused_worker_equals_it_on_a_fresh_one(worker_trial: int, warm_run: pd.DataFrame,
                                                             fresh_run: pd.DataFrame, two_size_dataset: Path) -> None:
    plan = _plan("warm")
    after, fresh = _final(warm_run, worker_trial), _final(fresh_run, 1)
    assert after["config/modality"] == "fusion" and after["config/backbone"] == "TestTinyCNN"
    pd.testing.assert_frame_equal(_epochs(warm_run, worker_trial), _epochs(fresh_run, 1), atol=1e-5, rtol=0)
    assert len(_epochs(fresh_run, 1)) == 2
    for key in (schema.TEST_F1_MACRO, schema.TEST_F1_MICRO, schema.TEST_ACCURACY, schema.VAL_LOSS):
        assert after[key] == pytest.approx(fresh[key], abs=1e-5)
    compared = plan.space.trial_config({**plan.space.fixed, **COMPARED})
    np.testing.assert_allclose(_val_probabilities(after, compared, two_size_dataset),
                               _val_probabilities(fresh, compared, two_size_dataset), atol=1e-5, rtol=0)
    # its CodeCarbon record holds its own segments only: 2 epochs and the test pass
    assert _task_names(after) == ["train-epoch1", "train-epoch2", "test"] == _task_names(fresh)
    # ... also in the trial's own folder, where a fresh worker's trial keeps CodeCarbon's files
    own = Path(after["trial_path"]) / "codecarbon" / schema.CODECARBON_TASKS_FILE
    checkpoint = Path(after["trial_path"]) / after["checkpoint_dir_name"]
    assert own.read_bytes() == (checkpoint / schema.CODECARBON_TASKS_FILE).read_bytes()
    # nothing of the trial before is still running: the same threads as a fresh worker has at its trial's start
    assert after[schema.WORKER_THREADS] == fresh[schema.WORKER_THREADS]
    # its overhead counts from the reset that handed it the trial, not from the process start
    assert 0 < after[schema.PROCESS_STARTUP_S] < fresh[schema.PROCESS_STARTUP_S]


def test_an_asha_sweep_on_retiring_workers_fails_no_trial(small_dataset: Path, tmp_path: Path) -> None:
    from ray.tune import ExperimentAnalysis

    plan = parse_sweep({
        "name": "retire", "seed": 3, "num_samples": 16, "max_concurrent": 2, "resources": {"cpus": 1},
        "n_startup_trials": 4, "max_trials_per_worker": 3,
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "fixed": {"modality": "exif", "epochs": 4, "batch_size": 32, "early_stopping_patience": 5},
        "params": {"exif_tags": {"subset_of": TAGS}, "learning_rate": {"loguniform": [0.0005, 0.02]}}})
    result = run_sweep(plan, small_dataset, storage_path=str(tmp_path))
    assert len(result.leaderboard) == 16
    assert set(result.leaderboard["status"]) <= {schema.STATUS_COMPLETE, schema.STATUS_STOPPED}
    analysis = ExperimentAnalysis(str(tmp_path / "retire"))
    assert len(analysis.trials) == 16
    assert all(trial.num_failures == 0 and trial.status == "TERMINATED" for trial in analysis.trials)
    last = pd.DataFrame([trial.last_result for trial in analysis.trials])
    assert last[schema.WORKER_TRIAL].max() == 3  # reuse happened, and no worker ran a fourth trial
    retirements = int(last[schema.WORKER_RETIRES].sum())
    assert (last[schema.WORKER_RETIRES] == (last[schema.WORKER_TRIAL] == 3)).all()
    assert retirements >= 1
    assert last["pid"].nunique() <= 4 + retirements
    for _pid, group in last.groupby("pid"):  # each worker counted its own trials 1, 2, ... without gaps
        assert sorted(group[schema.WORKER_TRIAL]) == list(range(1, len(group) + 1))


# Fine-tuning trials over a pretrained backbone (a weights file): the second borrows the backbone the first
# fine-tuned, from the worker's pool, and must train and score exactly as it does on a fresh worker.
TUNED_FIRST = {"modality": "fusion", "learning_rate": 0.003, "fine_tune_layers": 3}
TUNED_SECOND = {"modality": "image", "learning_rate": 0.002, "fine_tune_layers": 5}


def _tuned_plan(name: str, weights: str) -> SweepPlan:
    return _plan(name, data={"stream": "never"}, fixed={
        "backbone": "TestTinyCNN", "image_size": 32, "weights": weights, "epochs": 2, "fine_tune_epochs": 2,
        "batch_size": 32, "fusion_width": 8, "exif_tags": TAGS, "seed": 7, "early_stopping_patience": 5},
        params={"modality": {"choice": ["image", "fusion"]}, "learning_rate": {"choice": [0.002, 0.003]},
                "fine_tune_layers": {"choice": [3, 5]}})


@pytest.fixture(scope="module")
def tuned_runs(two_size_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    from exifray.testing.datasets import weights_files

    weights = weights_files(tmp_path_factory.mktemp("weights"), ["TestTinyCNN"], 32)["TestTinyCNN"]
    return {"warm": _run_points(_tuned_plan("tuned-warm", weights), two_size_dataset,
                                tmp_path_factory.mktemp("tuned-warm"), [TUNED_FIRST, TUNED_SECOND]),
            "fresh": _run_points(_tuned_plan("tuned-fresh", weights), two_size_dataset,
                                 tmp_path_factory.mktemp("tuned-fresh"), [TUNED_SECOND])}


def test_a_fine_tuning_trial_on_a_borrowed_backbone_equals_it_on_a_fresh_worker(
        tuned_runs: dict[str, pd.DataFrame], two_size_dataset: Path) -> None:
    warm_run, fresh_run = tuned_runs["warm"], tuned_runs["fresh"]
    assert warm_run["pid"].nunique() == 1
    first, after, fresh = _final(warm_run, 1), _final(warm_run, 2), _final(fresh_run, 1)
    assert first[schema.FINE_TUNED_LAYERS] > 0 and after[schema.FINE_TUNED_LAYERS] > 0  # both changed the backbone
    assert not first[schema.BACKBONE_REUSED] and after[schema.BACKBONE_REUSED] and not fresh[schema.BACKBONE_REUSED]
    assert after["config/modality"] == "image" and after["config/fine_tune_layers"] == 5
    epochs = _epochs(warm_run, 2)
    assert len(epochs) == 4  # 2 head epochs on cached features, 2 fine-tuning
    pd.testing.assert_frame_equal(epochs, _epochs(fresh_run, 1), atol=1e-5, rtol=0)
    for key in (schema.TEST_F1_MACRO, schema.TEST_F1_MICRO, schema.TEST_ACCURACY, schema.VAL_LOSS):
        assert after[key] == pytest.approx(fresh[key], abs=1e-5)
    plan = _tuned_plan("tuned-warm", "none")
    compared = plan.space.trial_config({**plan.space.fixed, **TUNED_SECOND})
    np.testing.assert_allclose(_val_probabilities(after, compared, two_size_dataset),
                               _val_probabilities(fresh, compared, two_size_dataset), atol=1e-5, rtol=0)
