"""Shared vocabulary: column names, metric keys and file names used by every stage.

These strings are the contract between crawl, ingest, train, sweep and leaderboard (DESIGN.md).
"""

from typing import Final

# --- CRAWL DIR -------------------------------------------------------------------------------
PHOTOS_FILE: Final = "photos.jsonl"
IMAGES_DIR: Final = "images"
EXIF_DIR: Final = "exif"

# --- DATASET DIR -----------------------------------------------------------------------------
SHARDS_DIR: Final = "shards"
DATASET_CARD: Final = "dataset.json"
QUARANTINE_FILE: Final = "quarantine.jsonl"
COL_PHOTO_ID: Final = "photo_id"
COL_LABELS: Final = "labels"
COL_SPLIT: Final = "split"
IMAGE_COL_PREFIX: Final = "image_"
EXIF_COL_PREFIX: Final = "exif_"
SPLITS: Final = ("train", "val", "test")


def image_column(size: int) -> str:
    return f"{IMAGE_COL_PREFIX}{size}"


def exif_column(tag: str) -> str:
    return f"{EXIF_COL_PREFIX}{tag}"


# --- Metrics (Tune results, metrics.json, leaderboard columns) ---------------------------------
VAL_LOSS: Final = "val_loss"
VAL_F1_MACRO: Final = "val_f1_macro"
VAL_F1_MICRO: Final = "val_f1_micro"
VAL_ACCURACY: Final = "val_accuracy"
EMISSIONS_KG: Final = "emissions_kg"
ENERGY_KWH: Final = "energy_kwh"
EPOCH_TIME_S: Final = "epoch_time_s"
TEST_F1_MACRO: Final = "test_f1_macro"
TEST_F1_MICRO: Final = "test_f1_micro"
TEST_ACCURACY: Final = "test_accuracy"
TRAIN_TIME_S: Final = "train_time_s"
PARAMS: Final = "params"
INFERENCE_MS: Final = "inference_ms"
EPOCH: Final = "epoch"
PHASE: Final = "phase"

EPOCH_METRICS: Final = (VAL_LOSS, VAL_F1_MACRO, VAL_F1_MICRO, VAL_ACCURACY, EMISSIONS_KG, ENERGY_KWH,
                        EPOCH_TIME_S)
FINAL_METRICS: Final = (TEST_F1_MACRO, TEST_F1_MICRO, TEST_ACCURACY, TRAIN_TIME_S, PARAMS, INFERENCE_MS)

# --- Trial output files ----------------------------------------------------------------------
MODEL_FILE: Final = "model.keras"
METRICS_FILE: Final = "metrics.json"
SETTINGS_FILE: Final = "settings.json"
HISTORY_FILE: Final = "history.jsonl"
