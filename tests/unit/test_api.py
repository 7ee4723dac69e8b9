"""The Python API's space loading (no Ray): files and dicts, fixed settings, the CLI's overrides and errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

import exifray
from exifray.errors import ConfigError, InputNotFoundError
from exifray.space_file import load_sweep

DEMO = Path(__file__).resolve().parents[2] / "search_spaces" / "demo.yaml"


def test_the_api_is_one_import_away_and_loads_on_first_use() -> None:
    from exifray import api

    assert exifray.load_space is api.load_space and exifray.predict_photos is api.predict_photos
    assert set(exifray.API) <= set(exifray.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = exifray.nothing  # type: ignore[attr-defined]


def test_no_api_name_is_shadowed_by_a_submodule_the_cli_imports() -> None:
    # Importing a submodule sets it on the package: an API function named like one (`predict`, `sweep`) would be
    # replaced by the module as soon as the CLI or the API itself imported it.
    import exifray.cli  # noqa: F401  (imports the command modules)
    import exifray.leaderboard  # noqa: F401
    import exifray.predict  # noqa: F401
    import exifray.sweep  # noqa: F401
    from exifray import api

    for name in exifray.API:
        assert importlib.util.find_spec(f"exifray.{name}") is None, name
        assert getattr(exifray, name) is getattr(api, name), name


def test_a_file_loads_as_the_cli_loads_it_and_fixed_settings_stop_being_swept() -> None:
    assert exifray.load_space(DEMO).to_yaml() == load_sweep(DEMO).to_yaml()
    plan = exifray.load_space(DEMO, fixed={"learning_rate": 0.01, "epochs": 2}, num_samples=3, max_concurrent=1)
    assert plan.space.fixed["learning_rate"] == 0.01 and plan.space.fixed["epochs"] == 2
    assert plan.space.param("learning_rate") is None and plan.space.num_samples == 3
    assert plan.space.max_concurrent == 1
    assert load_sweep(DEMO).space.param("learning_rate") is not None  # the file itself is unchanged


def test_a_dict_loads_like_the_same_yaml_and_smoke_test_shrinks_it() -> None:
    document = yaml.safe_load(DEMO.read_text())
    assert exifray.load_space(document).to_yaml() == load_sweep(DEMO).to_yaml()
    assert document == yaml.safe_load(DEMO.read_text())  # not modified
    assert exifray.load_space(document, smoke_test=True).space.total_trials == 1


def test_errors_are_the_clis() -> None:
    with pytest.raises(InputNotFoundError, match="search space file does not exist: nowhere.yaml"):
        exifray.load_space("nowhere.yaml")
    with pytest.raises(ConfigError, match=r"demo.yaml: fixed.epochs: epochs must be int"):
        exifray.load_space(DEMO, fixed={"epochs": "many"})
    with pytest.raises(ConfigError, match="fixed.modality"):
        exifray.load_space({"name": "x", "fixed": {"modality": "smell"}, "params": {}})
