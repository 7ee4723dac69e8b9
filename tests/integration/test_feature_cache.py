"""The frozen-backbone FEATURE CACHE: equal results with and without it, one build per key in a concurrent sweep,
reuse by later sweeps, refusal of augment, rebuilding of a damaged entry."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from exifray import schema
from exifray.config import TrialConfig
from exifray.feature_cache import BUILT, HIT, NOT_APPLICABLE, OFF, CacheAccess, FeatureCache
from exifray.testing.datasets import make_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cache-data")
    # Pretraining data: other photos of the target's concepts, easier to see, so the backbone learns features that
    # carry signal for the target. (Each scenario's visual prototypes are drawn independently: a tiny backbone
    # pretrained on another scenario gave the target's head val F1 0.3-0.6 depending on the seed.)
    return {"pretrain": make_dataset(root / "pretrain", photos=400, seed=11, sizes=(32,), image_signal=0.9),
            "target": make_dataset(root / "target", photos=240, seed=12, sizes=(32,), shard_size=100,
                                   image_signal=0.6)}


@pytest.fixture(scope="module")
def weights(datasets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Weights files: TestTinyCNN pretrained here on another scenario (so its features carry signal), SmallCNN as
    initialised (the sweep tests count cache entries, they need no signal)."""
    from exifray.models.registry import create_backbone
    from exifray.train import run_trial

    folder = tmp_path_factory.mktemp("weights")
    result = run_trial(TrialConfig(modality="image", backbone="TestTinyCNN", weights="none", epochs=8,
                                   learning_rate=3e-3, early_stopping_patience=8), datasets["pretrain"])
    assert result.metrics[schema.VAL_F1_MACRO] > 0.8
    files = {"TestTinyCNN": str(folder / "TestTinyCNN.weights.h5"), "SmallCNN": str(folder / "SmallCNN.weights.h5")}
    result.model.get_layer("test_tiny_cnn").save_weights(files["TestTinyCNN"])
    create_backbone("SmallCNN", 32).save_weights(files["SmallCNN"])
    return files


def _head_trial(weights_file: str, **settings: Any) -> TrialConfig:
    return TrialConfig.from_tune({"modality": "image", "backbone": "TestTinyCNN", "weights": weights_file,
                                  "image_size": 32, "fine_tune_layers": 0, "epochs": 4,
                                  "early_stopping_patience": 10, "seed": 5, **settings})


def test_head_phase_on_cached_features_equals_the_one_through_the_backbone(datasets: dict[str, Path],
                                                                           weights: dict[str, str],
                                                                           tmp_path: Path) -> None:
    from exifray.data.dataset import load_arrays
    from exifray.train import run_trial

    data = load_arrays(datasets["target"], 32)
    head_probabilities: dict[int, np.ndarray] = {}

    def record(row: dict[str, Any], state: Any) -> None:  # the head model and its validation inputs, each epoch
        head_probabilities[row[schema.EPOCH]] = state.model.predict(state.val[0], verbose=0)
        assert set(state.val[0]) == {"features"}  # the cached route really trains the head on features

    settings = {"epochs": 8, "learning_rate": 3e-3, "seed": 6}  # val F1 ~0.84 here; chance is 0.5
    cached = run_trial(_head_trial(weights["TestTinyCNN"], **settings), data, report=record, out_dir=tmp_path)
    plain = run_trial(_head_trial(weights["TestTinyCNN"], **settings, feature_cache="off"), data)
    assert cached.metrics[schema.FEATURE_CACHE] == BUILT and plain.metrics[schema.FEATURE_CACHE] == OFF
    assert cached.metrics[schema.VAL_F1_MACRO] == pytest.approx(plain.metrics[schema.VAL_F1_MACRO], abs=0.005)
    assert cached.metrics[schema.VAL_F1_MACRO] > 0.7  # pretrained features carry signal
    assert cached.metrics[schema.TEST_F1_MACRO] == pytest.approx(plain.metrics[schema.TEST_F1_MACRO], abs=0.01)
    # The full model (raw pixels in) now holds the head the cached route trained: same probabilities. A trial
    # outside a sweep (`exifray train`: no cache given, features in memory) saves it whole and times it.
    full = cached.model.predict({"image": data.val.images}, verbose=0)
    best = cached.metrics[schema.BEST_EPOCH]
    assert np.abs(full - head_probabilities[best]).max() < 1e-5
    assert [layer.name for layer in cached.model.inputs] == ["image"]
    assert (tmp_path / schema.MODEL_FILE).is_file() and not (tmp_path / schema.HEAD_MODEL_FILE).exists()
    assert cached.metrics[schema.INFERENCE_ESTIMATED] is False


def test_fine_tuning_on_cached_activations_equals_fine_tuning_through_the_backbone(
        datasets: dict[str, Path], weights: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exifray.cli import main
    from exifray.data.dataset import load_arrays
    from exifray.train import run_trial

    data = load_arrays(datasets["target"], 32)
    access = CacheAccess(FeatureCache.under(str(tmp_path)))
    seen: dict[str, dict[int, Any]] = {"cached": {}, "plain": {}}

    def record(route: str) -> Any:  # each epoch: the phase, the model's inputs and its validation probabilities
        def report(row: dict[str, Any], state: Any) -> None:
            seen[route][row[schema.EPOCH]] = (row[schema.PHASE], state.val[0],
                                              state.model.predict(state.val[0], verbose=0))
        return report

    settings = {"modality": "fusion", "epochs": 3, "fine_tune_layers": 3, "fine_tune_epochs": 3,  # conv2, bn2, relu2
                "learning_rate": 3e-3, "seed": 6}
    cached = run_trial(_head_trial(weights["TestTinyCNN"], **settings), data, report=record("cached"), cache=access)
    plain = run_trial(_head_trial(weights["TestTinyCNN"], **settings, feature_cache="off"), data,
                      report=record("plain"))
    assert cached.metrics[schema.FINE_TUNE_CACHE] == BUILT and plain.metrics[schema.FINE_TUNE_CACHE] == OFF
    assert [(phase, sorted(inputs)) for phase, inputs, _ in seen["cached"].values()] == [
        ("head", ["exif", "features"])] * 3 + [("fine_tune", ["activations", "exif"])] * 3
    assert cached.metrics[schema.FINE_TUNED_LAYERS] == plain.metrics[schema.FINE_TUNED_LAYERS] > 0
    for ours, theirs in zip(cached.history, plain.history, strict=True):  # every epoch, both phases
        for key in (schema.VAL_LOSS, schema.VAL_F1_MACRO, schema.VAL_ACCURACY):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-5), (ours[schema.EPOCH], key)
    for key in (schema.TEST_F1_MACRO, schema.TEST_ACCURACY):
        assert cached.metrics[key] == pytest.approx(plain.metrics[key], abs=1e-6)
    # The full model (pixels in) holds what the cached route fine-tuned: its probabilities are the tuning model's.
    best = cached.metrics[schema.BEST_EPOCH]
    full = cached.model.predict(seen["plain"][best][1], verbose=0)
    assert np.abs(full - seen["cached"][best][2]).max() < 1e-5
    assert [layer.name for layer in cached.model.inputs] == ["image", "exif"]
    # Another learning rate reads the same activations; they sit in the cache beside the pooled features.
    again = run_trial(_head_trial(weights["TestTinyCNN"], **settings | {"learning_rate": 1e-3}), data, cache=access)
    assert again.metrics[schema.FINE_TUNE_CACHE] == HIT and again.metrics[schema.FEATURE_CACHE] == HIT
    cuts = sorted(entry["key"].get("cut", "") for entry in access.cache.entries())
    assert cuts[0] == "" and len(cuts) == 2 and again.metrics["fine_tune_cache_key"] in {
        entry["digest"] for entry in access.cache.entries()}
    # Fine-tuned on cached activations, a trial's latency is estimated: the frozen layers' below the cut, measured
    # when the entry was built, plus the tuning model's own scoring pass. Through the backbone, it is measured.
    (below,) = [entry for entry in access.cache.entries() if entry["key"].get("cut")]
    assert 0 < below["backbone_params"] < cached.metrics[schema.PARAMS] == plain.metrics[schema.PARAMS]
    for trial in (cached, again):
        assert trial.metrics[schema.INFERENCE_ESTIMATED] is True
        assert trial.metrics[schema.INFERENCE_MS] > below["backbone_ms"] > 0
    assert plain.metrics[schema.INFERENCE_ESTIMATED] is False and plain.metrics[schema.INFERENCE_MS] > 0
    # An entry written before entries recorded that latency: the trial measures the full model's.
    entry_file = Path(access.cache.root) / below["digest"] / "entry.json"
    entry_file.write_text(json.dumps({k: v for k, v in below.items() if not k.startswith("backbone_")}))
    older = run_trial(_head_trial(weights["TestTinyCNN"], **settings | {"learning_rate": 2e-3}), data, cache=access)
    assert older.metrics[schema.FINE_TUNE_CACHE] == HIT and older.metrics[schema.INFERENCE_ESTIMATED] is False
    capsys.readouterr()
    assert main(["cache", "list", "--storage-path", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[4] for line in listed[:2]) == ["at", "pooled"], listed  # what each entry holds
    assert f" at {cuts[1]} " in "".join(listed) and listed[-1].startswith("2 entries in "), listed
    assert main(["cache", "clear", "--storage-path", str(tmp_path), "--key", again.metrics["fine_tune_cache_key"]]) == 0
    assert [entry["key"].get("cut", "") for entry in access.cache.entries()] == [""]
    # Fine-tuning the whole backbone leaves nothing below to cache: it trains through the backbone, and says why.
    whole = run_trial(_head_trial(weights["TestTinyCNN"], epochs=1, fine_tune_layers=99, fine_tune_epochs=1), data,
                      cache=access)
    assert whole.metrics[schema.FINE_TUNE_CACHE] == NOT_APPLICABLE
    assert "whole backbone" in whole.metrics["fine_tune_cache_reason"]


@pytest.mark.parametrize(("settings", "outcome", "reason"), [
    ({"augment": True}, NOT_APPLICABLE, "augment"),
    ({"weights": "none"}, NOT_APPLICABLE, "weights 'none'"),
    ({"modality": "exif"}, NOT_APPLICABLE, "EXIF-only"),
    ({"feature_cache": "off"}, OFF, "feature_cache: off"),
])
def test_trials_that_cannot_use_the_cache_say_why(datasets: dict[str, Path], weights: dict[str, str],
                                                  settings: dict[str, Any], outcome: str, reason: str) -> None:
    from exifray.train import run_trial

    result = run_trial(_head_trial(weights["TestTinyCNN"], epochs=1, **settings), datasets["target"])
    assert result.metrics[schema.FEATURE_CACHE] == outcome and reason in result.metrics["feature_cache_reason"]
    assert np.isnan(result.metrics[schema.FEATURE_BUILD_S])


def _grid(name: str, weights: dict[str, str], backbones: tuple[str, ...] | list[str] = ("TestTinyCNN", "SmallCNN"),
          sizes: tuple[int, ...] | list[int] = (32,),
          rates: tuple[float, ...] | list[float] = (0.001, 0.003)) -> Any:
    from exifray.space_file import parse_sweep

    return parse_sweep({
        "name": name, "scheduler": "none", "max_concurrent": 4, "resources": {"cpus": 0.5},
        "fixed": {"modality": "fusion", "fine_tune_layers": 0, "epochs": 2, "batch_size": 32, "seed": 3,
                  "weights": weights},  # a weights file per backbone
        "params": {"backbone": {"grid": list(backbones)}, "image_size": {"grid": list(sizes)},
                   "learning_rate": {"grid": list(rates)}}})


def test_a_concurrent_grid_builds_each_entry_once_and_the_next_sweep_none(datasets: dict[str, Path],
                                                                          weights: dict[str, str],
                                                                          tmp_path: Path) -> None:
    from exifray.bundle import evaluate, export_best, load_model
    from exifray.sweep import run_sweep

    first = run_sweep(_grid("first", weights), datasets["target"], storage_path=str(tmp_path))
    board = first.leaderboard
    assert len(board) == 4 and set(board["status"]) == {"complete"}  # all four at once
    entries = FeatureCache.under(str(tmp_path)).entries()
    assert len(entries) == 2  # one per backbone: the two learning rates share it
    assert sorted(board[schema.FEATURE_CACHE]) == [BUILT] * 2 + [HIT] * 2
    assert board[schema.FEATURE_BUILD_KG].notna().sum() == 2
    for checkpoint in board["checkpoint"]:
        metrics = json.loads((Path(checkpoint) / schema.METRICS_FILE).read_text())
        assert 0 < metrics[schema.STARTUP_S] < metrics[schema.PROCESS_STARTUP_S]  # measured in its worker process
        assert 0 < metrics[schema.OUTSIDE_TRAINING_SHARE] < 1
        # built or hit, a head-only trial's folder holds the head, and its latency is an estimate: the backbone's,
        # measured when the entry was built, plus the head's
        assert metrics[schema.INFERENCE_ESTIMATED] is True
        (entry,) = [e for e in entries if e["digest"] == metrics["feature_cache_key"]]
        assert metrics[schema.INFERENCE_MS] > entry["backbone_ms"] > 0 and entry["backbone_params"] > 0
        assert (Path(checkpoint) / schema.HEAD_MODEL_FILE).is_file()
        assert not (Path(checkpoint) / schema.MODEL_FILE).exists()
    # the next sweep reads every key (one learning rate: a trial per key) and builds none
    second = run_sweep(_grid("second", weights, rates=[0.001]), datasets["target"], storage_path=str(tmp_path))
    assert list(second.leaderboard[schema.FEATURE_CACHE]) == [HIT] * 2
    assert FeatureCache.under(str(tmp_path)).entries() == entries  # nothing rebuilt or rewritten
    # export-best assembles a head-only trial into a self-contained bundle that scores as the trial did
    bundle = tmp_path / "bundle"
    manifest = export_best(second.experiment_dir, bundle)
    assert (bundle / schema.MODEL_FILE).is_file() and not any((bundle / name).exists()
                                                              for name in schema.HEAD_ONLY_FILES)
    best = second.leaderboard.set_index("trial_id").loc[manifest["trial_id"]]
    scores = evaluate(load_model(bundle), datasets["target"])
    assert scores["test_f1_macro"] == pytest.approx(best[schema.TEST_F1_MACRO], abs=1e-6)
    # A sweep under another storage path, in the same Ray session, has a cache of its own: it builds its entry
    # (the first sweeps' coordinator, which held these features in the object store, ended with them).
    elsewhere = tmp_path / "elsewhere"
    one = _grid("elsewhere", weights, backbones=["TestTinyCNN"], rates=[0.001])
    assert list(run_sweep(one, datasets["target"], storage_path=str(elsewhere)).leaderboard[
        schema.FEATURE_CACHE]) == [BUILT]
    (own,) = FeatureCache.under(str(elsewhere)).entries()
    assert own["digest"] in {entry["digest"] for entry in entries}  # the same key, its own entry
    on = first.leaderboard.set_index(["backbone", "image_size", "learning_rate"])[schema.VAL_F1_MACRO]
    again = second.leaderboard.set_index(["backbone", "image_size", "learning_rate"])[schema.VAL_F1_MACRO]
    pd.testing.assert_series_equal(on.loc[again.index].sort_index(), again.sort_index(), atol=1e-6)


def test_a_damaged_entry_is_rebuilt_not_read(datasets: dict[str, Path], weights: dict[str, str],
                                             tmp_path: Path) -> None:
    from exifray.train import run_trial

    access = CacheAccess(FeatureCache(str(tmp_path / "cache")))
    config = _head_trial(weights["TestTinyCNN"], epochs=1)
    first = run_trial(config, datasets["target"], cache=access)
    (entry,) = access.cache.entries()
    path = tmp_path / "cache" / entry["digest"] / "features.npz"
    assert run_trial(config, datasets["target"], cache=access).metrics[schema.FEATURE_CACHE] == HIT
    path.write_bytes(path.read_bytes()[:-100])  # torn write
    rebuilt = run_trial(config, datasets["target"], cache=access)
    assert rebuilt.metrics[schema.FEATURE_CACHE] == BUILT
    assert rebuilt.metrics[schema.VAL_F1_MACRO] == pytest.approx(first.metrics[schema.VAL_F1_MACRO], abs=1e-6)
    (path.parent / "entry.json").unlink()  # a partial entry (no entry.json) does not exist
    assert access.cache.entries() == []
    assert run_trial(config, datasets["target"], cache=access).metrics[schema.FEATURE_CACHE] == BUILT


def test_a_cache_hit_never_builds_its_backbone_and_its_head_only_folder_assembles_the_same_model(
        datasets: dict[str, Path], weights: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial stopped in its head phase (as ASHA stops most) never builds the backbone, and one that finishes there
    does not build it for its artifact either: it saves its head and the backbone's identity, and its latency is the
    frozen backbone's, measured once per worker process, plus the head's, labelled estimated. Reading the folder
    assembles the full model, with the trial's own probabilities; a weights file that changed or is gone is named.
    Counted at the registry's builder, the one place backbones come from."""
    import shutil

    from exifray.bundle import load_model
    from exifray.data.dataset import load_arrays
    from exifray.errors import DataError, InputNotFoundError
    from exifray.models import registry
    from exifray.models.registry import BackboneSpec, get_backbone_spec, register_backbone
    from exifray.testing.trials import Saver
    from exifray.train import run_trial

    built: list[int] = []
    tiny = get_backbone_spec("TestTinyCNN")

    def counting_builder(*, image_size: int, weights: str | None) -> Any:
        built.append(image_size)
        return tiny.builder(image_size=image_size, weights=weights)

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test's backbone leaves with it
    register_backbone(BackboneSpec("CountingTinyCNN", "cnn", 32, 16, "unit", counting_builder, min_image_size=8,
                                   test_only=True))
    weights_file = tmp_path / "counting.weights.h5"
    shutil.copy(weights["TestTinyCNN"], weights_file)
    access = CacheAccess(FeatureCache(str(tmp_path / "cache")))
    config = _head_trial(str(weights_file), backbone="CountingTinyCNN", epochs=4)
    building = run_trial(config, datasets["target"], cache=access, out_dir=tmp_path / "building")
    assert building.metrics[schema.FEATURE_CACHE] == BUILT and len(built) == 1  # only the features' backbone
    # the trial that built the entry ends as a reader would: its head and the backbone's identity, latency estimated
    assert not (tmp_path / "building" / schema.MODEL_FILE).exists()
    assert {schema.HEAD_MODEL_FILE, schema.BACKBONE_FILE} <= {path.name for path in (tmp_path / "building").iterdir()}
    assert building.metrics[schema.INFERENCE_ESTIMATED] is True
    (entry,) = access.cache.entries()
    assert building.metrics[schema.INFERENCE_MS] > entry["backbone_ms"] > 0
    with pytest.raises(KeyboardInterrupt):  # stopped after its second epoch, as a scheduler stops a trial
        run_trial(config, datasets["target"], report=Saver(tmp_path / "stopped", crash_after=2), cache=access)
    assert len(built) == 1

    own: dict[int, np.ndarray] = {}  # the head's validation probabilities on the cached features, each epoch
    def record(row: dict[str, Any], state: Any) -> None:
        own[row[schema.EPOCH]] = state.model.predict(state.val[0], verbose=0)

    finished = run_trial(config, datasets["target"], cache=access, report=record, out_dir=tmp_path / "head-only")
    # a hit never builds the backbone: its latency adds the backbone's measured when the entry was built
    assert finished.metrics[schema.FEATURE_CACHE] == HIT and len(built) == 1
    assert [layer.name for layer in finished.model.inputs] == ["features"] and finished.backbone is not None
    assert finished.metrics[schema.INFERENCE_ESTIMATED] is True and finished.metrics[schema.INFERENCE_MS] > 0
    assert finished.metrics[schema.PARAMS] == building.metrics[schema.PARAMS]  # the full model's, backbone counted
    again = run_trial(replace(config, seed=9), datasets["target"], cache=access)
    assert again.metrics[schema.INFERENCE_ESTIMATED] is True and len(built) == 1
    # An entry written before entries recorded the backbone's latency: the trial measures it (once per process).
    (entry,) = access.cache.entries()
    entry_file = tmp_path / "cache" / entry["digest"] / "entry.json"
    entry_file.write_text(json.dumps({k: v for k, v in entry.items() if not k.startswith("backbone_")}))
    older = run_trial(replace(config, seed=10), datasets["target"], cache=access)
    assert older.metrics[schema.FEATURE_CACHE] == HIT and len(built) == 2
    assert older.metrics[schema.INFERENCE_MS] > 0 and older.metrics[schema.PARAMS] == building.metrics[schema.PARAMS]
    folder = tmp_path / "head-only"
    assert not (folder / schema.MODEL_FILE).exists()
    assert {schema.HEAD_MODEL_FILE, schema.BACKBONE_FILE} <= {path.name for path in folder.iterdir()}

    loaded = load_model(folder)  # assembled: the backbone built with the recorded weights, the head loaded
    assert len(built) == 3 and [layer.name for layer in loaded.model.inputs] == ["image"]  # (the 2nd: the older entry)
    val = load_arrays(datasets["target"], 32).val
    assembled = loaded.predict(loaded.inputs(val))
    assert np.abs(assembled - own[finished.metrics[schema.BEST_EPOCH]]).max() < 1e-5

    original = weights_file.read_bytes()
    weights_file.write_bytes(original[:-64] + bytes(64))  # another file at the recorded path
    with pytest.raises(DataError, match=rf"{weights_file}.* is now sha256:"):
        load_model(folder)
    weights_file.unlink()
    with pytest.raises(InputNotFoundError, match=rf"backbone's weights file {weights_file}, which is gone"):
        load_model(folder)


def test_a_trial_killed_in_the_cached_head_phase_resumes_from_a_head_only_checkpoint(
        datasets: dict[str, Path], weights: dict[str, str], tmp_path: Path) -> None:
    from exifray.experiment import RESUME_FILE
    from exifray.testing.trials import Saver
    from exifray.train import run_trial

    access = CacheAccess(FeatureCache(str(tmp_path / "cache")))
    config = _head_trial(weights["TestTinyCNN"], modality="fusion", epochs=4, fine_tune_layers=3, fine_tune_epochs=2)
    crashed = Saver(tmp_path / "first", crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, datasets["target"], report=crashed, cache=access)
    saved = crashed.folder(2)
    assert '"phase": "head"' in (saved / RESUME_FILE).read_text()
    resumed = Saver(tmp_path / "second")
    result = run_trial(config, datasets["target"], report=resumed, resume=saved, cache=access)
    assert resumed.epochs == [3, 4, 5, 6] and result.metrics[schema.RESUMED_FROM_EPOCH] == 2
    assert [row[schema.PHASE] for row in result.history] == ["head"] * 4 + ["fine_tune"] * 2
    assert result.metrics[schema.FEATURE_CACHE] == HIT  # the first attempt had built the entry
    # Head-phase checkpoints hold the head alone (no backbone layers); fine-tuning ones the layers above the cut.
    def layers_of(folder: Path) -> str:
        with zipfile.ZipFile(folder / schema.MODEL_FILE) as archive:
            return archive.read("config.json").decode()

    assert "test_tiny_cnn" not in layers_of(saved) and '"features"' in layers_of(saved)
    assert "test_tiny_cnn_above" in layers_of(resumed.folder(6)) and '"activations"' in layers_of(resumed.folder(6))
    # Killed in the fine-tuning phase: it resumes on the cached activations and ends where the unbroken run does.
    tuned = Saver(tmp_path / "third", crash_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, datasets["target"], report=tuned, cache=access)
    again = Saver(tmp_path / "fourth")
    finished = run_trial(config, datasets["target"], report=again, resume=tuned.folder(5), cache=access)
    assert again.epochs == [6] and finished.metrics[schema.FINE_TUNE_CACHE] == HIT
    assert [row[schema.PHASE] for row in finished.history] == ["head"] * 4 + ["fine_tune"] * 2
    # (resuming mid-phase restores the optimizer's state from the checkpoint; the full model's own route ends
    # within the same few 1e-4 of the unbroken run: the two routes do not differ here)
    assert finished.metrics[schema.VAL_LOSS] == pytest.approx(result.metrics[schema.VAL_LOSS], abs=0.01)


def test_mixed_precision_and_xla_train_with_float32_outputs_and_their_own_cache_entry(
        datasets: dict[str, Path], weights: dict[str, str], tmp_path: Path) -> None:
    from exifray.data.dataset import load_arrays
    from exifray.train import run_trial

    access = CacheAccess(FeatureCache(str(tmp_path / "cache")))
    data = load_arrays(datasets["target"], 32)
    results = {precision: run_trial(_head_trial(weights["TestTinyCNN"], epochs=2, precision=precision,
                                                jit_compile=True, fine_tune_layers=1, fine_tune_epochs=1),
                                    data, cache=access)
               for precision in ("float32", "mixed_bfloat16")}
    for result in results.values():
        probabilities = result.model.predict({"image": data.val.images[:16]}, verbose=0)
        assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)
        assert 0 <= result.metrics[schema.VAL_F1_MACRO] <= 1 and result.metrics[schema.FEATURE_CACHE] == BUILT
        assert result.model.get_layer("head").dtype_policy.name == "float32"
    assert results["mixed_bfloat16"].model.get_layer("image_pool").dtype_policy.name == "mixed_bfloat16"
    pooled = [e["key"]["precision"] for e in access.cache.entries() if not e["key"].get("cut")]
    activations = [e["key"]["precision"] for e in access.cache.entries() if e["key"].get("cut")]
    assert sorted(pooled) == sorted(activations) == ["float32", "mixed_bfloat16"]  # fine-tuning's own entries too
    assert {result.metrics[schema.FINE_TUNE_CACHE] for result in results.values()} == {BUILT}
