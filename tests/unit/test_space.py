"""Search space files: every shipped file loads and converts; bad files name the key and the value."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from exifray.config import TrialConfig
from exifray.errors import ConfigError, InputNotFoundError
from exifray.exif.tags import TAG_NAMES
from exifray.space import TAG_FLAG_PREFIX
from exifray.space_file import load_space, load_sweep, parse_space, parse_sweep

SPACES = sorted((Path(__file__).parents[2] / "search_spaces").glob("*.yaml"))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sample(space, seed: int) -> dict:
    """What OptunaSearch hands a trial: the define-by-run draws of a real Optuna study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    space.define_by_run(trial)
    return {**space.fixed, **trial.params}


def test_search_spaces_shipped() -> None:
    assert {p.stem for p in SPACES} >= {"demo", "fusion", "exif_only", "image_only", "thesis_grid", "multiobjective"}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_file_loads_and_converts(path: Path) -> None:
    space = load_space(path)
    assert path.read_text().startswith(f"# exifray sweep --space search_spaces/{path.name}")
    configs = ([{**space.fixed, **point} for point in space.grid_points()] if space.is_grid
               else [_sample(space, seed) for seed in range(25)])
    for config in configs:
        trial = space.trial_config(config, threads=2)
        assert isinstance(trial, TrialConfig) and trial.threads == 2
        if trial.uses_image:
            assert trial.image_size in space.image_sizes()
    assert parse_space(space.to_yaml()) == space  # sweep.yaml round-trips
    plan = load_sweep(path)
    assert parse_sweep(plan.to_yaml()) == plan


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_file_smoke_variant_is_one_tiny_trial(path: Path) -> None:
    smoke = load_sweep(path).with_overrides(smoke_test=True).space
    assert smoke.total_trials == 1 and smoke.scheduler.type == "none"
    assert smoke.fixed["epochs"] == 1 and smoke.fixed["weights"] == "none"
    backbone = smoke.param("backbone")
    assert backbone is None or backbone.values == ("TestTinyCNN",)


def test_thesis_grid_has_one_exif_point() -> None:
    points = load_space(Path(SPACES[0]).parent / "thesis_grid.yaml").grid_points()
    assert len(points) == 4 * 2 * 2 + 1
    assert [p for p in points if p["modality"] == "exif"] == [{"modality": "exif"}]
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)


def test_conditional_parameters_follow_the_modality() -> None:
    space = parse_space({"params": {"modality": {"choice": ["exif", "image", "fusion"]},
                                    "backbone": {"choice": ["SmallCNN", "TestTinyCNN"]},
                                    "fine_tune_layers": {"randint": [0, 5]},
                                    "exif_tags": {"subset_of": ["ExposureTime", "ISO"]},
                                    "fusion_width": {"choice": [16, 32]}}})
    seen = set()
    for seed in range(40):
        config = _sample(space, seed)
        seen.add(config["modality"])
        has_image = "backbone" in config and "fine_tune_layers" in config
        has_exif = f"{TAG_FLAG_PREFIX}ISO" in config
        assert has_image == (config["modality"] in ("image", "fusion"))
        assert has_exif == (config["modality"] in ("exif", "fusion"))
        assert ("fusion_width" in config) == (config["modality"] == "fusion")
        assert 0 <= config.get("fine_tune_layers", 0) <= 4
    assert seen == {"exif", "image", "fusion"}


@pytest.mark.parametrize(("flags", "expected"), [
    ({"ExposureTime": True, "ISO": False, "Flash": True}, ("ExposureTime", "Flash")),
    ({"ExposureTime": False, "ISO": False}, ("ExposureTime", "ISO")),  # empty draw: every listed tag
])
def test_tag_flags_become_the_trial_tags(flags: dict, expected: tuple) -> None:
    space = parse_space({"params": {"exif_tags": {"subset_of": list(flags)}}})
    config = {TAG_FLAG_PREFIX + tag: value for tag, value in flags.items()}
    assert space.trial_config(config).exif_tags == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("exposure", ("ExposureTime", "FNumber", "ISO")),
    ("all", TAG_NAMES),
    ("ISO+ExposureTime", ("ExposureTime", "ISO")),
])
def test_named_and_joined_tag_subsets(value: str, expected: tuple) -> None:
    space = parse_space({"tag_subsets": {"exposure": ["ExposureTime", "FNumber", "ISOSpeedRatings"]},
                         "params": {"exif_tags": {"choice": ["exposure", "all", "ISO+ExposureTime"]}}})
    assert space.trial_config({"exif_tags": value}).exif_tags == expected


def test_yaml_exponent_strings_are_numbers() -> None:
    space = parse_space(yaml.safe_load("params:\n  learning_rate: {loguniform: [1e-4, 1e-2]}\n"))
    assert space.param("learning_rate").values == (0.0001, 0.01)


def test_overrides() -> None:
    space = parse_sweep({"num_samples": 5, "params": {"dropout": {"uniform": [0.0, 0.5]}}})
    assert space.with_overrides(num_samples=9, max_concurrent=3).space.num_samples == 9
    grid = parse_sweep({"params": {"dropout": {"grid": [0.1, 0.2]}}})
    with pytest.raises(ConfigError, match="num_samples"):
        grid.with_overrides(num_samples=3)


@pytest.mark.parametrize(("document", "reused"), [
    ({}, True), ({"resources": {"gpus": 1}}, False), ({"resources": {"gpus": 0.5}, "warm_workers": True}, True),
    ({"warm_workers": False}, False)])
def test_warm_workers_default_on_for_cpu_trials_and_off_for_gpu_trials(document: dict, reused: bool) -> None:
    plan = parse_sweep(document)
    assert plan.config.reuse_workers is reused
    assert plan.to_yaml()["warm_workers"] is reused  # sweep.yaml stores what ran
    assert parse_sweep(plan.to_yaml()).config == plan.config


@pytest.mark.parametrize(("search", "sampler", "multivariate"), [
    (None, "TPESampler", True), ("tpe", "TPESampler", True), ("independent_tpe", "TPESampler", False),
    ("random", "RandomSampler", None)])
def test_search_picks_the_optuna_sampler(search: str | None, sampler: str, multivariate: bool | None) -> None:
    from exifray.sweep_tuner import build_sampler

    plan = parse_sweep({"seed": 3, **({"search": search} if search else {}),
                        "params": {"dropout": {"uniform": [0.0, 0.5]}}})
    built = build_sampler(plan.space)
    assert type(built).__name__ == sampler
    if multivariate is not None:
        # Optuna keeps these flags only as private attributes (None: its default, independent)
        assert bool(built._multivariate) is multivariate and built._group is multivariate
        assert built._constant_liar is True  # Optuna 5's default, kept for concurrent trials
    assert plan.to_yaml()["search"] == (search or "tpe")  # sweep.yaml stores what ran
    assert parse_sweep(plan.to_yaml()).space == plan.space


BAD = [
    ({"search": "cmaes"}, r"search must be one of tpe, independent_tpe, random, got 'cmaes'"),
    ({"search": "random", "params": {"backbone": {"grid": ["SmallCNN"]}}}, r"search: a grid file runs every"),
    ({"metrc": "val_f1_macro"}, r"metrc: unknown key \(did you mean 'metric'\?\)"),
    ({"metric": "test_f1_macro"}, r"metric must be one of .* got 'test_f1_macro'"),
    ({"mode": "maximize"}, r"mode must be 'max' or 'min', got 'maximize'"),
    ({"metric": ["val_f1_macro", "emissions_kg"], "mode": ["max"]}, r"metric and mode must have the same length"),
    ({"metric": ["val_f1_macro", "emissions_kg"], "mode": ["max", "min"]}, r"scheduler: a multi-objective sweep"),
    ({"num_samples": 0}, r"num_samples must be an integer >= 1, got 0"),
    ({"max_concurrent": "two"}, r"max_concurrent must be an integer >= 1, got 'two'"),
    ({"checkpoint_every": 0}, r"checkpoint_every must be an integer >= 1, got 0"),
    ({"warm_workers": "yes"}, r"warm_workers must be true or false, got 'yes'"),
    ({"max_trials_per_worker": 0}, r"max_trials_per_worker must be an integer >= 1, got 0"),
    ({"worker_growth_mb": -5}, r"worker_growth_mb must be a number of MiB > 0, got -5"),
    ({"scheduler": "hyperband"}, r"scheduler.type must be one of asha, median, none, got 'hyperband'"),
    ({"scheduler": {"type": "asha", "reduction_factor": 1}}, r"scheduler.reduction_factor must be >= 2, got 1"),
    ({"resources": {"cpus": 0}}, r"resources.cpus must be a number > 0, got 0"),
    ({"resources": {"gpus": 1.5}}, r"resources.gpus above 1 must be whole GPUs, got 1.5"),
    ({"fixed": {"learning_rte": 0.1}}, r"fixed.learning_rte: unknown key \(did you mean 'learning_rate'\?\)"),
    ({"fixed": {"threads": 4}}, r"fixed.threads: unknown key"),
    ({"fixed": {"backbone": "EfficientNetB9"}}, r"fixed.backbone: .*EfficientNetB9"),
    ({"fixed": {"dropout": 1.5}}, r"fixed.dropout: dropout must be in \[0, 1\), got 1.5"),
    ({"params": {"dropout": {"uniform": [0.1, 1.5]}}}, r"params.dropout.uniform: dropout must stay below 1"),
    ({"params": {"dropout": {"normal": [0, 1]}}}, r"params.dropout: unknown operator 'normal'"),
    ({"params": {"dropout": 0.3}}, r"params.dropout must be one operator"),
    ({"params": {"learning_rate": {"loguniform": [0, 0.1]}}}, r"params.learning_rate.loguniform needs low > 0"),
    ({"params": {"learning_rate": {"uniform": [0.1, 0.01]}}}, r"params.learning_rate.uniform: low must be < high"),
    ({"params": {"fine_tune_layers": {"randint": [0, 2.5]}}}, r"params.fine_tune_layers.randint takes integers"),
    ({"params": {"fine_tune_layers": {"randint": [-3, 2]}}}, r"params.fine_tune_layers: fine_tune_layers must be >= 0"),
    ({"params": {"backbone": {"choice": ["MobileNetV2", "ResNet51"]}}}, r"params.backbone: .*ResNet51"),
    ({"params": {"modality": {"choice": ["image", "text"]}}}, r"params.modality: modality must be one of"),
    ({"params": {"exif_tags": {"subset_of": ["ISO", "Shoe"]}}}, r"params.exif_tags.subset_of: .*Shoe"),
    ({"params": {"exif_tags": {"choice": ["nosuchsubset"]}}}, r"params.exif_tags: .*nosuchsubset"),
    ({"params": {"fusion_width": {"subset_of": [16]}}}, r"params.fusion_width: subset_of is only for exif_tags"),
    ({"params": {"batch_size": {"choice": [32, 32]}}}, r"params.batch_size.choice: values repeat"),
    ({"params": {"batch_size": {"choice": [[32]]}}}, r"params.batch_size.choice: values must be strings, numbers"),
    ({"fixed": {"epochs": 3}, "params": {"epochs": {"choice": [1, 2]}}}, r"params.epochs: is also in fixed"),
    ({"params": {"backbone": {"grid": ["SmallCNN"]}, "dropout": {"uniform": [0.1, 0.2]}}},
     r"must use it for every parameter"),
    ({"num_samples": 4, "params": {"backbone": {"grid": ["SmallCNN"]}}}, r"num_samples: a grid file runs every"),
    ({"fixed": {"modality": "exif"}, "params": {"backbone": {"choice": ["SmallCNN"]}}},
     r"params.backbone: only used by image/fusion models, but the file only trains exif"),
    ({"tag_subsets": {"all": ["ISO"]}}, r"tag_subsets.all: a subset name must be a plain word"),
    ({"name": "../escape"}, r"name must be letters, digits"),
    (["not", "a", "mapping"], r"a search space must be a mapping"),
    ({"params": {"feature_cache": {"choice": ["auto", "off"]}}}, r"params.feature_cache: feature_cache is a fixed"),
    ({"fixed": {"weights": {"EffNetB0": "imagenet"}}}, r"fixed.weights.EffNetB0: unknown backbone 'EffNetB0'"),
    ({"fixed": {"precision": "float8"}}, r"fixed.precision: precision must be one of"),
    ({"fixed": {"batch_size": 16.7}}, r"fixed.batch_size: batch_size must be int, got 16.7"),
]


@pytest.mark.parametrize(("document", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_space_names_key_and_value(document: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sweep(document)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("params:\n  dropout: {uniform: [0.1, 0.2]\n")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML"):
        load_space(broken)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        load_space(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("resources", "cluster", "can_grow", "smoke", "expected"), [
    ({"cpus": 4, "gpus": 0.5}, {"CPU": 2.0}, False, True, (1.0, 0.0)),  # smoke test of a GPU file on a laptop
    ({"cpus": 4, "gpus": 0.5}, {"CPU": 16.0, "GPU": 1.0}, False, True, (1.0, 0.5)),
    ({"cpus": 2, "gpus": 0}, {"CPU": 2.0}, False, False, (2.0, 0.0)),
    ({"cpus": 4, "gpus": 1}, {"CPU": 2.0}, True, False, (4.0, 1.0)),  # a cluster that can add nodes: wait
])
def test_fit_resources(resources: dict, cluster: dict, can_grow: bool, smoke: bool, expected: tuple) -> None:
    plan = parse_sweep({"resources": resources})
    if smoke:
        plan = plan.with_overrides(smoke_test=True)
    fitted = plan.config.fit(cluster, can_grow).resources
    assert (fitted.cpus, fitted.gpus) == expected


def test_fit_resources_refuses_what_a_fixed_cluster_cannot_give() -> None:
    with pytest.raises(ConfigError, match=r"resources: each trial asks for 4 CPUs and 0.5 GPUs, but this Ray "
                                          r"cluster has 2 CPUs and 0 GPUs"):
        parse_sweep({"resources": {"cpus": 4, "gpus": 0.5}}).config.fit({"CPU": 2.0}, can_grow=False)


def test_explicit_flags_win_over_smoke_test_and_the_changes_are_listed() -> None:
    plan = parse_sweep({"num_samples": 20, "max_concurrent": 4, "scheduler": "asha", "resources": {"cpus": 2},
                        "fixed": {"epochs": 15, "backbone": "EfficientNetB0", "weights": "imagenet"},
                        "params": {"learning_rate": {"loguniform": [1e-4, 1e-2]}}})
    smoke = plan.with_overrides(smoke_test=True)
    assert (smoke.space.num_samples, smoke.space.max_concurrent) == (1, 1)
    assert set(smoke.smoke_changes) >= {"num_samples 20 -> 1", "max_concurrent 4 -> 1", "scheduler asha -> none",
                                        "epochs 15 -> 1", "weights imagenet -> none",
                                        "backbone EfficientNetB0 -> TestTinyCNN"}
    both = plan.with_overrides(smoke_test=True, num_samples=6, max_concurrent=2)
    assert (both.space.num_samples, both.space.max_concurrent) == (6, 2)
    assert both.config.smoke_test and both.space.fixed["epochs"] == 1
    assert not any(c.startswith(("num_samples", "max_concurrent")) for c in both.smoke_changes)


def test_weights_can_be_given_per_backbone() -> None:
    space = parse_space({"fixed": {"weights": {"SmallCNN": "none", "MobileNetV2": "imagenet"}},
                         "params": {"backbone": {"choice": ["SmallCNN", "MobileNetV2", "TestTinyCNN"]}}})
    assert space.trial_config({**space.fixed, "backbone": "MobileNetV2"}).weights == "imagenet"
    assert space.trial_config({**space.fixed, "backbone": "SmallCNN"}).weights == "none"
    assert space.trial_config({**space.fixed, "backbone": "TestTinyCNN"}).weights == "auto"  # not named


def _on_off_settings() -> list[tuple[type, str, str]]:
    """Every setting of every config dataclass whose choices include `off` or `on`."""
    import dataclasses

    import exifray.config as config

    found = []
    for cls in vars(config).values():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            for item in dataclasses.fields(cls):
                choices = item.metadata.get("choices") or ()
                found += [(cls, item.name, word) for word in ("off", "on") if word in choices]
    return found


def test_the_on_off_settings_are_the_ones_the_docs_show() -> None:
    assert [(cls.__name__, name, word) for cls, name, word in _on_off_settings()] == [
        ("TrialConfig", "feature_cache", "off")]


@pytest.mark.parametrize(("cls", "name", "word"), _on_off_settings(), ids=lambda v: getattr(v, "__name__", v))
def test_an_unquoted_yaml_off_or_on_means_the_word(cls: type, name: str, word: str) -> None:
    from exifray.config import coerce

    assert coerce(cls, name, word == "on") == word
    if cls is TrialConfig:  # a space file: stored as the word, so sweep.yaml and a resume read it back the same
        text = f"name: words\nfixed: {{modality: exif, {name}: {word}}}\nparams: {{learning_rate: {{grid: [0.01]}}}}\n"
        document = yaml.safe_load(text)
        assert document["fixed"][name] is (word == "on")  # what YAML makes of it
        plan = parse_sweep(document)
        assert plan.space.fixed[name] == word and plan.to_yaml()["fixed"][name] == word
        assert parse_sweep(yaml.safe_load(yaml.safe_dump(plan.to_yaml()))).to_yaml() == plan.to_yaml()
        assert plan.space.trial_config(dict(plan.space.fixed)).feature_cache == word  # as a trial reads it


def test_a_yaml_boolean_a_setting_has_no_word_for_is_refused_naming_the_choices() -> None:
    document = yaml.safe_load("name: words\nfixed: {modality: exif, feature_cache: on}\n"
                              "params: {learning_rate: {grid: [0.01]}}\n")
    with pytest.raises(ConfigError, match=r"fixed.feature_cache: feature_cache must be one of auto, off, got True "
                                          r"\(YAML reads an unquoted on/off/yes/no as a boolean\)"):
        parse_sweep(document)


@pytest.mark.parametrize(("document", "expected"), [
    ({"fixed": {"modality": "exif"}}, False),  # no backbone at all
    ({"fixed": {"modality": "fusion", "backbone": "TestTinyCNN"}}, False),  # auto: it has no ImageNet weights
    ({"fixed": {"modality": "fusion", "backbone": "MobileNetV2"}}, True),  # auto: ImageNet
    ({"fixed": {"modality": "image", "backbone": "MobileNetV2", "weights": "none"}}, False),
    ({"fixed": {"modality": "image", "backbone": "MobileNetV2", "feature_cache": "off"}}, False),
    ({"fixed": {"modality": "image", "backbone": "TestTinyCNN", "weights": "/models/tiny.weights.h5"}}, True),
    ({"fixed": {"modality": "image", "weights": {"TestTinyCNN": "none", "SmallCNN": "/w/small.weights.h5"}},
      "params": {"backbone": {"grid": ["TestTinyCNN", "SmallCNN"]}}}, True),
    ({"fixed": {"modality": "image", "weights": {"TestTinyCNN": "none"}},
      "params": {"backbone": {"grid": ["TestTinyCNN", "SmallCNN"]}}}, False),  # SmallCNN: auto, no ImageNet
    ({"fixed": {"backbone": "MobileNetV2"}, "params": {"modality": {"grid": ["exif", "fusion"]}}}, True),
    ({"fixed": {"backbone": "MobileNetV2", "feature_cache": "off"},
      "params": {"modality": {"grid": ["exif", "fusion"]}}}, False),
])
def test_a_sweep_starts_the_cache_coordinator_only_when_a_trial_could_use_the_cache(document: dict,
                                                                                    expected: bool) -> None:
    space = parse_space({"name": "c", "params": {"learning_rate": {"grid": [0.001]}}, **document}
                        | {"params": {"learning_rate": {"grid": [0.001]}, **document.get("params", {})}})
    assert space.may_cache_features() is expected


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_the_shipped_spaces_use_the_cache_and_their_smoke_variants_do_not(path: Path) -> None:
    plan = load_sweep(path)
    assert plan.space.may_cache_features() is (path.stem not in ("demo", "exif_only"))  # demo: SmallCNN from scratch
    assert not plan.with_overrides(smoke_test=True).space.may_cache_features()  # weights none
