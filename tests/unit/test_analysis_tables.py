"""Pareto flags, metric directions and the comparison tables on hand-made leaderboards (no Ray, no TF)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from exifray.analysis import fusion_vs_image, grouped, metric_mode, pareto_flags, ranked, speed_front, with_pareto
from exifray.errors import ConfigError
from exifray.report import parse_formats, table_bytes

NAN = math.nan


@pytest.mark.parametrize(("score", "cost", "expected"), [
    ([0.9], [1.0], [True]),
    ([0.9, 0.8], [1.0, 2.0], [True, False]),  # worse and dearer: dominated
    ([0.9, 0.8], [2.0, 1.0], [True, True]),  # a trade-off: both on the front
    ([0.9, 0.9], [1.0, 1.0], [True, True]),  # identical points dominate neither
    ([0.9, 0.9], [1.0, 2.0], [True, False]),  # same F1, dearer
    ([0.9, 0.8], [1.0, 1.0], [True, False]),  # same cost, lower F1
    ([0.5, 0.7, 0.9, 0.6], [1.0, 2.0, 3.0, 2.5], [True, True, True, False]),
    ([NAN, 0.8], [0.1, 1.0], [False, True]),  # no score: never on the front, dominates nothing
    ([0.95, 0.8], [NAN, 1.0], [False, True]),
    ([], [], []),
])
def test_pareto_flags(score: list[float], cost: list[float], expected: list[bool]) -> None:
    assert pareto_flags(score, cost) == expected


def _board(rows: list[dict]) -> pd.DataFrame:
    defaults = {"status": "complete", "label_mode": "single", "backbone": None, "image_size": None,
                "val_f1_macro": NAN, "test_f1_macro": NAN, "emissions_kg": NAN, "train_time_s": NAN,
                "checkpoint": "c", "error": None}
    frame = pd.DataFrame([{**defaults, "trial_id": f"t{i}", **row} for i, row in enumerate(rows)])
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def test_speed_front_keeps_trials_no_faster_one_matches_fastest_first() -> None:
    board = _board([
        {"modality": "fusion", "test_f1_macro": 0.9, "inference_ms": 4.0, "params": 10},
        {"modality": "image", "test_f1_macro": 0.8, "inference_ms": 1.0, "params": 5},
        {"modality": "image", "test_f1_macro": 0.7, "inference_ms": 2.0, "params": 5},  # slower and worse
        {"modality": "exif", "test_f1_macro": 0.95, "inference_ms": 0.1, "status": "error", "params": 1},
    ])
    front = speed_front(board)
    assert front["trial_id"].tolist() == ["t1", "t0"]
    assert list(front.columns) == ["trial_id", "modality", "backbone", "image_size", "inference_ms",
                                   "test_f1_macro", "params"]


def test_with_pareto_uses_complete_trials_and_validation_f1() -> None:
    board = _board([
        {"modality": "fusion", "val_f1_macro": 0.9, "emissions_kg": 2e-3},
        {"modality": "image", "val_f1_macro": 0.8, "emissions_kg": 1e-3},
        {"modality": "image", "val_f1_macro": 0.7, "emissions_kg": 3e-3},  # dominated
        {"modality": "exif", "val_f1_macro": 0.99, "emissions_kg": 1e-4, "status": "stopped"},  # not complete
    ])
    out = with_pareto(board, "val_f1_macro")
    assert out["pareto"].tolist() == [True, True, False, False]
    assert out["f1_per_gram_co2"].tolist()[:3] == pytest.approx([0.9 / 2, 0.8 / 1, 0.7 / 3])
    assert math.isnan(out["f1_per_gram_co2"].iloc[3])
    at = list(out.columns).index("pareto")
    assert list(out.columns[at:at + 3]) == ["pareto", "f1_per_gram_co2", "checkpoint"]
    # a cost metric as --metric: the front still plots F1 (validation) against emissions
    assert with_pareto(board, "emissions_kg")["pareto"].tolist() == [True, True, False, False]


def test_ranked_orders_by_metric_direction_and_keeps_every_status() -> None:
    board = _board([{"modality": "exif", "val_f1_macro": 0.6, "emissions_kg": 1.0},
                    {"modality": "exif", "status": "error", "error": "boom"},
                    {"modality": "exif", "val_f1_macro": 0.8, "emissions_kg": 3.0},
                    {"modality": "exif", "val_f1_macro": 0.7, "emissions_kg": 2.0, "status": "stopped"}])
    assert ranked(board, "val_f1_macro")["trial_id"].tolist() == ["t2", "t0", "t3", "t1"]
    assert ranked(board, "emissions_kg")["trial_id"].tolist() == ["t0", "t2", "t3", "t1"]
    assert metric_mode("val_loss") == "min" and metric_mode("test_f1_micro") == "max"
    with pytest.raises(ConfigError, match="--metric 'f2' is not a numeric leaderboard column"):
        ranked(board, "f2")


def test_fusion_vs_image_picks_by_validation_and_reports_test_deltas() -> None:
    board = _board([
        {"modality": "image", "backbone": "B0", "image_size": 50, "val_f1_macro": 0.7, "test_f1_macro": 0.71,
         "train_time_s": 10.0, "emissions_kg": 1.0},
        {"modality": "image", "backbone": "B0", "image_size": 50, "val_f1_macro": 0.6, "test_f1_macro": 0.9,
         "train_time_s": 1.0, "emissions_kg": 1.0},  # better test F1, but selection is on validation
        {"modality": "fusion", "backbone": "B0", "image_size": 50, "val_f1_macro": 0.8, "test_f1_macro": 0.76,
         "train_time_s": 12.0, "emissions_kg": 1.5},
        {"modality": "fusion", "backbone": "B0", "image_size": 150, "val_f1_macro": 0.8, "test_f1_macro": 0.8,
         "train_time_s": 12.0, "emissions_kg": 1.5},  # no image-only trial at 150 px
        {"modality": "exif", "val_f1_macro": 0.65, "test_f1_macro": 0.6},
        {"modality": "exif", "val_f1_macro": 0.5, "test_f1_macro": 0.7},
        {"modality": "image", "backbone": "B0", "image_size": 50, "label_mode": "multi", "val_f1_macro": 0.5,
         "test_f1_macro": 0.5},
    ])
    table = fusion_vs_image(board, "val_f1_macro").set_index(["image_size", "label_mode"])
    single = table.loc[(50, "single")]
    assert single["image_trial"] == "t0" and single["fusion_trial"] == "t2"
    assert single["delta_test_f1_macro"] == pytest.approx(0.05) and single["exif_only_test_f1_macro"] == 0.6
    assert single["delta_train_time_s"] == pytest.approx(2.0) and single["delta_emissions_kg"] == pytest.approx(0.5)
    assert single["image_trials"] == 2 and single["fusion_trials"] == 1
    assert np.isnan(table.loc[(150, "single"), "delta_test_f1_macro"])
    multi = table.loc[(50, "multi")]
    assert multi["image_test_f1_macro"] == 0.5 and np.isnan(multi["exif_only_test_f1_macro"])


def test_grouped_counts_every_trial() -> None:
    board = _board([{"modality": "exif", "val_f1_macro": 0.6, "test_f1_macro": 0.5, "emissions_kg": 1.0},
                    {"modality": "exif", "status": "error"},
                    {"modality": "image", "val_f1_macro": 0.8, "test_f1_macro": 0.7, "emissions_kg": 2.0}])
    table = grouped(board, "modality", "val_f1_macro").set_index("modality")
    assert table.loc["exif", "trials"] == 2 and table.loc["exif", "errored"] == 1
    assert table.loc["image", "best_trial"] == "t2" and table.loc["image", "best_test_f1_macro"] == 0.7


def test_formats() -> None:
    assert parse_formats("csv, md,parquet") == ("csv", "md", "parquet")
    with pytest.raises(ConfigError, match="unknown xlsx"):
        parse_formats("csv,xlsx")
    frame = pd.DataFrame({"a": [1.23456789, NAN], "b": ["x", None]})
    assert "1.23457" in table_bytes(frame, "md").decode() and table_bytes(frame, "parquet")[:4] == b"PAR1"
