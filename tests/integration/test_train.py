from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exifray import schema
from exifray.cli import main
from exifray.config import TrialConfig
from exifray.data.dataset import load_arrays
from exifray.errors import ConfigError
from exifray.train import TrialFailed, model_inputs, run_trial


@pytest.mark.parametrize("modality", ["exif", "image", "fusion"])
def test_trial_reports_every_epoch_and_final_metrics(small_dataset: Path, tmp_path: Path, modality: str) -> None:
    reports: list[dict[str, Any]] = []
    config = TrialConfig(modality=modality, backbone="TestTinyCNN", epochs=3, early_stopping_patience=5, batch_size=32)
    result = run_trial(config, small_dataset, report=lambda row, state: reports.append(row), out_dir=tmp_path)
    assert [row[schema.EPOCH] for row in reports] == [1, 2, 3]
    for row in reports:
        assert all(math.isfinite(row[key]) for key in schema.EPOCH_METRICS)
        assert 0.0 <= row[schema.VAL_F1_MACRO] <= 1.0
    emissions = [row[schema.EMISSIONS_KG] for row in reports]
    assert emissions[0] > 0 and emissions == sorted(emissions)  # cumulative for the trial
    metrics = json.loads((tmp_path / schema.METRICS_FILE).read_text())
    for key in (*schema.FINAL_METRICS, schema.EMISSIONS_KG, schema.ENERGY_KWH, schema.VAL_F1_MACRO):
        assert metrics[key] is not None and metrics[key] >= 0, key
    assert metrics[schema.EMISSIONS_KG] >= emissions[-1]
    assert metrics[schema.VAL_F1_MACRO] == pytest.approx(
        next(r for r in reports if r[schema.EPOCH] == metrics["best_epoch"])[schema.VAL_F1_MACRO])
    settings = json.loads((tmp_path / schema.SETTINGS_FILE).read_text())
    assert settings["modality"] == modality and settings["classes"] == ["indoor", "outdoor"]
    assert len((tmp_path / schema.HISTORY_FILE).read_text().splitlines()) == 3
    assert schema.is_final(result.metrics) and schema.is_final(metrics)  # the explicit final-result marker
    assert not any(schema.is_final(row) for row in reports)


def test_saved_model_reproduces_predictions(small_dataset: Path, tmp_path: Path) -> None:
    import keras

    config = TrialConfig(modality="fusion", backbone="TestTinyCNN", epochs=2,
                         exif_tags=("ISO", "ExposureTime", "Flash"))
    result = run_trial(config, small_dataset, out_dir=tmp_path)
    data = load_arrays(small_dataset, 32)
    inputs = model_inputs(data.test, config, data.encoder.subset(config.exif_tags))
    assert inputs["exif"].shape[1] == 6
    loaded = keras.models.load_model(tmp_path / schema.MODEL_FILE)
    assert [i.name for i in loaded.inputs] == ["image", "exif"]
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), result.model.predict(inputs, verbose=0), atol=1e-5)


def test_two_phase_fine_tuning_over_a_local_weights_file(small_dataset: Path, tmp_path: Path) -> None:
    from exifray.models.registry import create_backbone

    pretrained = create_backbone("TestTinyCNN", 32)
    weights_file = tmp_path / "pretrained.weights.h5"
    pretrained.save_weights(weights_file)
    kernels = {layer.name: layer.get_weights()[0] for layer in pretrained.layers if layer.name.startswith("conv")}
    config = TrialConfig(modality="image", backbone="TestTinyCNN", weights=str(weights_file), fine_tune_layers=3,
                         epochs=2, fine_tune_epochs=2, early_stopping_patience=5)
    result = run_trial(config, small_dataset)
    assert [row[schema.PHASE] for row in result.history] == ["head", "head", "fine_tune", "fine_tune"]
    assert result.metrics["fine_tuned_layers"] == 1  # top 3 layers are relu2, bn2, conv2: only conv2 trains
    backbone = result.model.get_layer("test_tiny_cnn")
    assert all(not layer.trainable for layer in backbone.layers if "bn" in layer.name)
    assert [backbone.get_layer(f"conv{i}").trainable for i in range(3)] == [False, False, True]
    # conv0/conv1 stayed frozen through both phases; conv2 was fine-tuned. The model keeps the weights of its
    # lowest-val_loss epoch: conv2 differs from the pretrained kernel exactly when that epoch is a fine-tuning one
    # (which one it is can change with TensorFlow's thread pools, fixed by whichever trial ran first in the process).
    assert np.array_equal(backbone.get_layer("conv0").get_weights()[0], kernels["conv0"])
    assert np.array_equal(backbone.get_layer("conv1").get_weights()[0], kernels["conv1"])
    kept = min(result.history, key=lambda row: row[schema.VAL_LOSS])
    conv2_unchanged = np.array_equal(backbone.get_layer("conv2").get_weights()[0], kernels["conv2"])
    assert conv2_unchanged == (kept[schema.PHASE] == "head"), kept


def test_diverging_training_fails_the_trial_with_a_message(small_dataset: Path) -> None:
    # 1e30 makes weights overflow float32 in the first steps, so the loss is NaN for any seed
    config = TrialConfig(modality="exif", epochs=3, learning_rate=1e30, batch_size=8)
    with pytest.raises(TrialFailed, match="diverged"):
        run_trial(config, small_dataset)


def test_image_size_not_in_dataset_is_a_config_error(small_dataset: Path) -> None:
    with pytest.raises(ConfigError, match=r"image_size 50 is not in the dataset; it has sizes \[32\]"):
        run_trial(TrialConfig(modality="image", image_size=50), small_dataset)


def test_train_command_writes_outputs_and_prints_metrics(small_dataset: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-q", "train", "--data", str(small_dataset), "--out", str(tmp_path / "run"), "--modality", "exif",
                 "--epochs", "2", "--exif-tags", "ISO,FNumber,ExposureTime"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and 0 <= printed["test_f1_macro"] <= 1 and printed["epochs"] == 2
    assert (tmp_path / "run" / schema.MODEL_FILE).is_file()


def test_array_batches_visit_every_row_once_per_epoch_in_a_new_order() -> None:
    from exifray.train import array_batches

    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    images.setflags(write=False)  # what a trial gets from the object store
    targets = np.eye(10, dtype=np.float32)
    batches = array_batches({"image": images}, targets, batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 3

    def epoch() -> list[int]:
        rows = []
        for index in range(len(batches)):
            x, y = batches[index]
            assert x["image"].shape[1:] == (2, 2, 3) and len(y) == len(x["image"]) <= 4
            rows += [int(np.argmax(row)) for row in y]
            np.testing.assert_array_equal(x["image"], images[[int(np.argmax(row)) for row in y]])
        batches.on_epoch_end()
        return rows

    first, second = epoch(), epoch()
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    (x_only,) = array_batches({"image": images}, None, batch_size=4)[2]
    np.testing.assert_array_equal(x_only["image"], images[8:])
