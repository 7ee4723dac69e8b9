"""A trial resumes from a saved training state (what a Tune trial does after losing its node)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exifray import schema
from exifray.config import TrialConfig
from exifray.experiment import RESUME_FILE
from exifray.testing.trials import Saver
from exifray.train import TrialFailed, run_trial


def steps_per_epoch(dataset: Path, batch_size: int) -> int:
    from exifray.data.dataset import load_arrays

    return math.ceil(len(load_arrays(dataset, 32).train) / batch_size)


def same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return json.dumps(a, default=float, sort_keys=True) == json.dumps(b, default=float, sort_keys=True)


def test_a_crashed_trial_resumes_at_its_next_epoch_with_model_optimizer_and_history(small_dataset: Path,
                                                                                    tmp_path: Path) -> None:
    config = TrialConfig(modality="fusion", backbone="TestTinyCNN", epochs=4, early_stopping_patience=10,
                         batch_size=32, exif_tags=("ISO", "FNumber", "ExposureTime"))
    crashed = Saver(tmp_path / "first", crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, small_dataset, report=crashed)
    saved = json.loads((crashed.folder(2) / RESUME_FILE).read_text())
    assert saved["epoch"] == 2 and saved["phase"] == "train" and len(saved["history"]) == 2

    resumed = Saver(tmp_path / "second")
    result = run_trial(config, small_dataset, report=resumed, resume=crashed.folder(2))
    assert resumed.epochs == [3, 4]  # epochs 1-2 are not trained again
    assert [row[schema.EPOCH] for row in result.history] == [1, 2, 3, 4]
    assert same_rows(result.history[:2], saved["history"])
    assert result.metrics["resumed_from_epoch"] == 2 and result.metrics["epochs"] == 4
    # Adam's step counter came back with the weights: 4 epochs of steps in all, not 2.
    assert int(result.model.optimizer.iterations.numpy()) == 4 * steps_per_epoch(small_dataset, 32)
    # emissions and train time carry on from the checkpoint instead of restarting at zero
    assert result.history[2][schema.EMISSIONS_KG] > saved["emissions"]["emissions_kg"] > 0
    assert result.metrics[schema.TRAIN_TIME_S] > saved["train_time_s"]
    assert result.metrics[schema.VAL_LOSS] == min(row[schema.VAL_LOSS] for row in result.history)
    # CodeCarbon's rows: the first attempt's two epochs (carried by the checkpoint), then the second's two epochs
    # and its test segment; they add up to the trial's emissions_kg. Only the finished attempt wrote emissions.csv.
    import io

    import pandas as pd

    tasks = pd.read_csv(io.BytesIO(result.emissions_files[schema.CODECARBON_TASKS_FILE]))
    assert tasks["task_name"].tolist() == ["train-epoch1", "train-epoch2", "train-epoch3", "train-epoch4", "test"]
    assert tasks["run_id"].nunique() == 2 and tasks["run_id"].iloc[1] != tasks["run_id"].iloc[2]
    assert abs(tasks["emissions"].sum() - result.metrics[schema.EMISSIONS_KG]) < 1e-12
    run = pd.read_csv(io.BytesIO(result.emissions_files[schema.CODECARBON_RUN_FILE]))
    assert len(run) == 1 and run.loc[0, "run_id"] == tasks["run_id"].iloc[-1]


def test_resuming_after_the_last_epoch_only_evaluates_the_saved_best_weights(small_dataset: Path,
                                                                            tmp_path: Path) -> None:
    config = TrialConfig(modality="image", backbone="TestTinyCNN", epochs=3, early_stopping_patience=10, batch_size=32)
    whole = Saver(tmp_path / "whole")
    reference = run_trial(config, small_dataset, report=whole)
    again = Saver(tmp_path / "again")
    result = run_trial(config, small_dataset, report=again, resume=whole.folder(3))
    assert again.epochs == []
    assert same_rows(result.history, reference.history)
    # the best epoch's weights were restored from the checkpoint, so the test metrics are the same ones
    for key in (schema.TEST_F1_MACRO, schema.TEST_ACCURACY, schema.VAL_LOSS, "best_epoch"):
        assert result.metrics[key] == reference.metrics[key], key
    for mine, theirs in zip(result.model.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_two_phase_resume_keeps_the_phase_it_was_in(small_dataset: Path, tmp_path: Path) -> None:
    from exifray.models.registry import create_backbone

    weights_file = tmp_path / "pretrained.weights.h5"
    create_backbone("TestTinyCNN", 32).save_weights(weights_file)
    config = TrialConfig(modality="image", backbone="TestTinyCNN", weights=str(weights_file), fine_tune_layers=3,
                         epochs=2, fine_tune_epochs=2, early_stopping_patience=10, batch_size=32)
    crashed = Saver(tmp_path / "first", crash_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, small_dataset, report=crashed)

    in_fine_tune = Saver(tmp_path / "fine")
    result = run_trial(config, small_dataset, report=in_fine_tune, resume=crashed.folder(3))
    assert in_fine_tune.epochs == [4]
    assert [row[schema.PHASE] for row in result.history] == ["head", "head", "fine_tune", "fine_tune"]
    assert result.metrics["fine_tuned_layers"] == 1 and result.metrics["resumed_from_epoch"] == 3

    after_head = Saver(tmp_path / "head")  # the head phase had ended; fine-tuning starts from its best weights
    result = run_trial(config, small_dataset, report=after_head, resume=crashed.folder(2))
    assert after_head.epochs == [3, 4]
    assert [row[schema.PHASE] for row in result.history] == ["head", "head", "fine_tune", "fine_tune"]


def test_an_early_stopped_phase_stays_stopped_and_patience_carries_over(small_dataset: Path, tmp_path: Path) -> None:
    config = TrialConfig(modality="exif", epochs=8, early_stopping_patience=2, batch_size=32, learning_rate=0.05)
    whole = Saver(tmp_path / "whole")
    run_trial(config, small_dataset, report=whole)
    states = {epoch: json.loads((whole.folder(epoch) / RESUME_FILE).read_text()) for epoch in whole.epochs}
    assert any(state["phase_done"] for state in states.values()), "the reference run never stopped early"
    assert any(state["wait"] == 1 for state in states.values()), "no checkpoint between improvements"
    for epoch, saved in states.items():
        if not (saved["phase_done"] or saved["wait"] > 0):
            continue
        again = Saver(tmp_path / f"from{epoch}")
        result = run_trial(config, small_dataset, report=again, resume=whole.folder(epoch))
        if saved["phase_done"]:
            assert again.epochs == [], epoch
            continue
        # the saved patience counter goes on: the run stops once it reaches 2, counting the saved epochs
        best, wait = saved["best_loss"], saved["wait"]
        for row in result.history[epoch:]:
            if row[schema.VAL_LOSS] < best:
                best, wait = row[schema.VAL_LOSS], 0
            else:
                wait += 1
            stop = wait >= config.early_stopping_patience or row[schema.EPOCH] == config.epochs
            assert stop == (row is result.history[-1]), (epoch, row[schema.EPOCH])


def test_a_damaged_checkpoint_is_a_clear_trial_failure(small_dataset: Path, tmp_path: Path) -> None:
    config = TrialConfig(modality="exif", epochs=2, batch_size=32)
    saver = Saver(tmp_path / "run")
    run_trial(config, small_dataset, report=saver)
    broken = tmp_path / "broken"
    shutil.copytree(saver.folder(1), broken)
    (broken / schema.MODEL_FILE).write_bytes(b"not a keras file")
    with pytest.raises(TrialFailed, match=r"cannot resume from the checkpoint in .*broken"):
        run_trial(config, small_dataset, resume=broken)
    (broken / RESUME_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(TrialFailed, match=r"cannot resume from .*resume\.json: JSONDecodeError"):
        run_trial(config, small_dataset, resume=broken)
    other = TrialConfig(modality="exif", epochs=2, batch_size=32, exif_tags=("ISO",))  # a different model
    with pytest.raises(TrialFailed, match="holds a different model than this trial builds"):
        run_trial(other, small_dataset, resume=saver.folder(1))
