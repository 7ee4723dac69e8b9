"""Shared vocabulary: column names, metric keys and file names used by every stage.

These strings are the contract between crawl, ingest, train, sweep and leaderboard (DESIGN.md).
"""

from collections.abc import Mapping
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
# True when inference_ms is a head-only trial's estimate: its frozen backbone's latency plus its head's
INFERENCE_ESTIMATED: Final = "inference_ms_estimated"
CODECARBON_RUN_FILE: Final = "emissions.csv"  # CodeCarbon's own file: one row per tracker run (a trial attempt)
CODECARBON_TASKS_FILE: Final = "emissions_tasks.csv"  # one row per measured segment (epoch, test), appended
CODECARBON_FILES: Final = (CODECARBON_RUN_FILE, CODECARBON_TASKS_FILE)  # in checkpoints, final folders, bundles
POWER_SOURCE: Final = "power_source"  # how CodeCarbon obtained the power (it logs this, not in its CSV)
EPOCH: Final = "epoch"
PHASE: Final = "phase"

EPOCH_METRICS: Final = (VAL_LOSS, VAL_F1_MACRO, VAL_F1_MICRO, VAL_ACCURACY, EMISSIONS_KG, ENERGY_KWH,
                        EPOCH_TIME_S)
FINAL_METRICS: Final = (TEST_F1_MACRO, TEST_F1_MICRO, TEST_ACCURACY, TRAIN_TIME_S, PARAMS, INFERENCE_MS)

# --- Trial output files ----------------------------------------------------------------------
MODEL_FILE: Final = "model.keras"
# A head-only trial's final folder has these in place of MODEL_FILE (`models.assembly` builds the full model)
HEAD_MODEL_FILE: Final = "head.keras"
BACKBONE_FILE: Final = "backbone.json"
HEAD_ONLY_FILES: Final = (HEAD_MODEL_FILE, BACKBONE_FILE)
METRICS_FILE: Final = "metrics.json"
SETTINGS_FILE: Final = "settings.json"
HISTORY_FILE: Final = "history.jsonl"
# The test split's photo ids, targets and the kept model's probabilities: the report's paired bootstrap of a
# difference in test F1 between two trials of a sweep (same dataset, same split)
TEST_PREDICTIONS_FILE: Final = "test_predictions.npz"

# Keys only a trial's final result carries (with the FINAL_METRICS above).
EPOCHS: Final = "epochs"
BEST_EPOCH: Final = "best_epoch"
RESUMED_FROM_EPOCH: Final = "resumed_from_epoch"
FINE_TUNED_LAYERS: Final = "fine_tuned_layers"
# Fixed cost of a trial: entering run_trial → first epoch; in a sweep also the worker's receiving the trial (its
# process start on a fresh worker, Tune's reset on a warm one) → first epoch, and the share of the trial's wall time
# (received → final report) spent outside training epochs.
STARTUP_S: Final = "startup_s"
PROCESS_STARTUP_S: Final = "process_startup_s"
OUTSIDE_TRAINING_SHARE: Final = "outside_training_share"
# The trial worker (a Ray actor that warm workers reuse): which of its trials this is, its private memory (USS, MiB)
# when the trial began, whether it retires after this trial, and the threads alive when the trial began.
WORKER_TRIAL: Final = "worker_trial"
WORKER_USS_MB: Final = "worker_uss_mb"
WORKER_RETIRES: Final = "worker_retires"
WORKER_THREADS: Final = "worker_threads"
BACKBONE_REUSED: Final = "backbone_reused"  # the trial's pretrained backbone was lent by its warm worker, not built
# Text a final result carries (Tune keeps it; the leaderboard shows it).
FEATURE_CACHE: Final = "feature_cache"
FEATURE_BUILD_S: Final = "feature_build_s"  # what the FEATURE CACHE entries a trial built cost: how long, CO2-eq
FEATURE_BUILD_KG: Final = "feature_build_kg"
FINE_TUNE_CACHE: Final = "fine_tune_cache"  # the fine-tuning phase on cached activations: hit / built / off / n.a.
DATA_SOURCE: Final = "data_source"  # where a trial's pixels came from: "memory" or "streamed (...)"
FINAL_TEXT_KEYS: Final = (POWER_SOURCE, FEATURE_CACHE, "feature_cache_reason", "feature_cache_key", FINE_TUNE_CACHE,
                          "fine_tune_cache_reason", "fine_tune_cache_key", DATA_SOURCE)
# The explicit marker of a trial's final report (the one with test metrics and the final checkpoint).
FINAL_RESULT: Final = "final_result"


def is_final(result: Mapping[str, object] | None) -> bool:
    """Whether a Tune result (or metrics.json) is a trial's final report."""
    return result is not None and bool(result.get(FINAL_RESULT, False))


# --- Modalities and which settings they use ----------------------------------------------------
IMAGE: Final = "image"
EXIF: Final = "exif"
FUSION: Final = "fusion"
MODALITIES: Final = (IMAGE, EXIF, FUSION)
IMAGE_MODALITIES: Final = (IMAGE, FUSION)
EXIF_MODALITIES: Final = (EXIF, FUSION)


def uses_image(modality: str) -> bool:
    return modality in IMAGE_MODALITIES


def uses_exif(modality: str) -> bool:
    return modality in EXIF_MODALITIES


# Which modalities a trial setting affects; settings not listed affect every modality.
APPLIES_TO: Final[Mapping[str, tuple[str, ...]]] = {
    "backbone": IMAGE_MODALITIES,
    "weights": IMAGE_MODALITIES,
    "image_size": IMAGE_MODALITIES,
    "fine_tune_layers": IMAGE_MODALITIES,
    "fine_tune_learning_rate_factor": IMAGE_MODALITIES,
    "fine_tune_epochs": IMAGE_MODALITIES,
    "augment": IMAGE_MODALITIES,
    "exif_tags": EXIF_MODALITIES,
    "fusion_width": (FUSION,),
}


def applies_to(setting: str) -> tuple[str, ...]:
    return APPLIES_TO.get(setting, MODALITIES)


# --- Trial status (leaderboard, journal mirror, progress) -------------------------------------
STATUS_COMPLETE: Final = "complete"  # ran to the end and reported test metrics
STATUS_STOPPED: Final = "stopped"  # stopped early by the scheduler (no test metrics)
STATUS_ERROR: Final = "error"
STATUS_RUNNING: Final = "running"
STATUS_PENDING: Final = "pending"
FINISHED_STATUSES: Final = (STATUS_COMPLETE, STATUS_STOPPED, STATUS_ERROR)
