"""Tracking settings and what the trackers send, without a server (tests/integration/test_tracking.py has one)."""

from __future__ import annotations

import math
import pickle
import sys

import pytest

from exifray import schema
from exifray.errors import ConfigError
from exifray.space_file import parse_sweep
from exifray.tracking import InertTracker, MlflowTracking, Tracking, is_tracker, result_metrics, trial_params


def test_tracking_needs_its_extra_and_a_uri_before_ray_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        Tracking(mlflow="").checked()
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if exifray[wandb] were not installed
    with pytest.raises(ConfigError, match=r"exifray\[wandb\]"):
        Tracking(wandb="project").checked()
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"exifray\[mlflow\]"):
        Tracking(mlflow="http://127.0.0.1:1").checked()


def test_a_tracker_pickles_as_an_inert_callback_without_its_uri() -> None:
    plan = parse_sweep({"name": "t", "num_samples": 2, "fixed": {"backbone": "TestTinyCNN"},
                        "params": {"learning_rate": {"loguniform": [0.001, 0.01]}}})
    tracker = MlflowTracking("http://user:secret@tracking.example:5000", "/tmp/experiments/t", "t", plan)
    data = pickle.dumps(tracker)
    assert b"secret" not in data and b"tracking.example" not in data
    restored = pickle.loads(data)
    assert type(restored) is InertTracker and is_tracker(restored)
    assert restored.on_trial_start(0, [], None) is None  # Tune's hooks do nothing


def test_results_become_metrics_and_settings_become_params() -> None:
    result = {"training_iteration": 3, "val_f1_macro": 0.5, "val_loss": math.nan, schema.FINAL_RESULT: True,
              "done": False, "phase": "head", "params": 1200, "pid": 7, schema.WORKER_RETIRES: False}
    assert result_metrics(result) == {"val_f1_macro": 0.5, "params": 1200.0}
    assert trial_params({"backbone": "MobileNetV2", "exif_tags": ["ISO", "Flash"], "fusion_width": None,
                         "learning_rate": 0.001}) == {"backbone": "MobileNetV2", "exif_tags": "['ISO', 'Flash']",
                                                      "learning_rate": "0.001"}
