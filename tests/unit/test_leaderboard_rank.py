"""Leaderboard rows and ranking (pure pandas, no Ray)."""

from __future__ import annotations

import pandas as pd

from exifray.leaderboard import COLUMNS, rank, trial_row


def _row(trial_id: str, status: str, val: float | None, modality: str = "fusion", **result: float) -> dict:
    settings = {"modality": modality, "backbone": "SmallCNN", "image_size": 32, "exif_tags": ["ExposureTime", "ISO"],
                "fusion_width": 64, "learning_rate": 0.001, "batch_size": 32}
    metrics = {"val_f1_macro": val, **result} if val is not None else dict(result)
    return trial_row(trial_id, status, settings, metrics, error="ValueError: boom" if status == "error" else None)


def test_rank_orders_finished_by_metric_then_status() -> None:
    frame = rank([_row("a", "complete", 0.7), _row("b", "error", None), _row("c", "stopped", 0.9),
                  _row("d", "complete", 0.8), _row("e", "running", 0.95)])
    assert list(frame["trial_id"]) == ["d", "a", "c", "e", "b"]
    assert list(frame["rank"]) == [1, 2, 3, 4, 5] and list(frame.columns) == list(COLUMNS)
    assert frame.loc[frame["trial_id"] == "b", "error"].item() == "ValueError: boom"


def test_rank_min_mode_puts_smallest_first() -> None:
    frame = rank([_row("a", "complete", 0.7, val_loss=0.3), _row("b", "complete", 0.6, val_loss=0.2)],
                 metric="val_loss", mode="min")
    assert list(frame["trial_id"]) == ["b", "a"]


def test_settings_a_modality_does_not_use_are_blank() -> None:
    frame = rank([_row("i", "complete", 0.7, modality="image"), _row("x", "complete", 0.6, modality="exif")])
    image, exif = frame.iloc[0], frame.iloc[1]
    assert image["backbone"] == "SmallCNN" and pd.isna(image["exif_tags"]) and pd.isna(image["fusion_width"])
    assert exif["exif_tags"] == "ExposureTime+ISO" and pd.isna(exif["backbone"]) and pd.isna(exif["image_size"])


def test_stopped_trial_keeps_its_best_epoch() -> None:
    row = trial_row("s", "stopped", {"modality": "exif"}, {"val_f1_macro": 0.5, "epoch": 4}, best_val=0.62)
    assert row["val_f1_macro"] == 0.62 and row["epochs"] == 4


def test_complete_trial_shows_the_epoch_it_kept_not_the_best_seen() -> None:
    row = trial_row("c", "complete", {"modality": "exif"}, {"val_f1_macro": 0.81, "test_f1_macro": 0.8}, best_val=0.84)
    assert row["val_f1_macro"] == 0.81
