"""Trained models outside the sweep: the best trial exported as a bundle, evaluation, permutation importance.

    exifray export-best experiments/fusion --out models/best-fusion --modality fusion
    exifray evaluate models/best-fusion --data data/dataset                  # test macro F1 etc. as JSON
    exifray importance models/best-fusion --data data/dataset --out reports/importance

A bundle (and a trial's final checkpoint, which has the same files) holds `model.keras`, `settings.json`
(the trial's settings plus classes, label mode, image size, preprocessing and the fitted EXIF encoder
statistics), `metrics.json`, `history.jsonl` and, for a bundle, `bundle.json` (what it is and where it came
from, by name only). Nothing in it points back into the experiment directory.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from exifray import schema
from exifray.errors import ConfigError, DataError, InputNotFoundError
from exifray.experiment import TRIAL_FILES, open_experiment

if TYPE_CHECKING:
    import keras

    from exifray.data.dataset import SplitArrays
    from exifray.exif.encode import ExifEncoder

logger = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "exifray-model-bundle"
BUNDLE_VERSION = 1


@dataclass
class LoadedModel:
    path: str
    model: keras.Model
    settings: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def modality(self) -> str:
        return str(self.settings["modality"])

    @property
    def uses_image(self) -> bool:
        return schema.uses_image(self.modality)

    @property
    def uses_exif(self) -> bool:
        return schema.uses_exif(self.modality)

    @property
    def multi_label(self) -> bool:
        return self.settings["label_mode"] == "multi"

    def encoder(self) -> ExifEncoder:
        from exifray.exif.encode import ExifEncoder

        return ExifEncoder.from_dict(self.settings["exif_encoder"])

    def inputs(self, split: SplitArrays) -> dict[str, np.ndarray]:
        inputs: dict[str, np.ndarray] = {}
        if self.uses_image:
            if split.images is None:
                raise DataError(f"{self.path} is an {self.modality} model, but the split was loaded without images")
            inputs["image"] = split.images
        if self.uses_exif:
            inputs["exif"] = self.encoder().transform(split.exif_columns())
        return inputs

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        from exifray.train import array_batches

        batch = int(self.settings.get("batch_size", 32)) * 2
        return self.model.predict(array_batches(inputs, None, batch), verbose=0)


def load_model(path: str | Path) -> LoadedModel:
    """A bundle or a trial's final checkpoint folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputNotFoundError(f"model folder does not exist: {path}")
    missing = [name for name in (schema.MODEL_FILE, schema.SETTINGS_FILE) if not (folder / name).is_file()]
    if missing:
        raise InputNotFoundError(f"{path} is not a bundle or a final trial checkpoint: it lacks {', '.join(missing)} "
                                 f"(export one with `exifray export-best`)")
    settings = json.loads((folder / schema.SETTINGS_FILE).read_text(encoding="utf-8"))
    metrics_path = folder / schema.METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    import keras

    model = keras.models.load_model(folder / schema.MODEL_FILE, compile=False)
    return LoadedModel(str(folder), model, settings, metrics)


def load_split(loaded: LoadedModel, dataset_dir: str | Path, split: str = "test") -> SplitArrays:
    """One split of a DATASET DIR, checked to have the classes the model was trained on."""
    from exifray.data.dataset import load_arrays

    size = loaded.settings.get("image_size") if loaded.uses_image else None
    data = load_arrays(dataset_dir, size)
    if list(data.classes) != list(loaded.settings["classes"]):
        raise DataError(f"dataset {dataset_dir} has classes {data.classes}; the model was trained on "
                        f"{loaded.settings['classes']}")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    arrays = getattr(data, split)
    if len(arrays) == 0:
        raise DataError(f"dataset {dataset_dir} has no {split} photos")
    return arrays


def evaluate(loaded: LoadedModel, dataset_dir: str | Path, split: str = "test") -> dict[str, float]:
    from exifray.metrics import f1_scores

    arrays = load_split(loaded, dataset_dir, split)
    scores = f1_scores(arrays.targets, loaded.predict(loaded.inputs(arrays)), loaded.multi_label)
    return {f"{split}_{key}": float(value) for key, value in scores.items()} | {f"{split}_photos": len(arrays)}


def permutation_importance(loaded: LoadedModel, dataset_dir: str | Path, permutations: int = 50, seed: int = 0,
                           split: str = "test") -> pd.DataFrame:
    """Per EXIF tag: the drop in macro F1 when that tag's encoded columns are shuffled across photos, all
    together (a one-hot group stays one valid row), repeated `permutations` times; mean and std of the drop."""
    from exifray.metrics import f1_scores

    if not loaded.uses_exif:
        raise ConfigError(f"{loaded.path} is an {loaded.modality}-only model: it has no EXIF input to permute")
    if permutations < 1:
        raise ConfigError(f"permutations must be >= 1, got {permutations!r}")
    arrays = load_split(loaded, dataset_dir, split)
    inputs = loaded.inputs(arrays)
    baseline = f1_scores(arrays.targets, loaded.predict(inputs), loaded.multi_label)["f1_macro"]
    rng = np.random.default_rng(seed)
    rows = []
    for tag, columns in loaded.encoder().feature_groups().items():
        drops = []
        for _ in range(permutations):
            shuffled = inputs["exif"].copy()
            shuffled[:, columns] = shuffled[rng.permutation(len(shuffled)), columns]
            score = f1_scores(arrays.targets, loaded.predict({**inputs, "exif": shuffled}), loaded.multi_label)
            drops.append(baseline - score["f1_macro"])
        rows.append({"tag": tag, "mean_drop": float(np.mean(drops)), "std_drop": float(np.std(drops)),
                     "baseline_f1_macro": float(baseline), "permutations": permutations, "split": split,
                     "photos": len(arrays), "model": Path(loaded.path).name})
    frame = pd.DataFrame(rows).sort_values("mean_drop", ascending=False, kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def write_importance(frame: pd.DataFrame, out: str | Path) -> list[Path]:
    """`importance.csv` and `importance.svg` (the chart) in `out`."""
    from exifray.fsutil import atomic_write_bytes
    from exifray.report import importance_chart

    folder = Path(out)
    ordered = frame.set_index("tag")
    chart = importance_chart(ordered["mean_drop"], ordered["std_drop"],
                             "macro-F1 drop when the tag is permuted (mean ± std)")
    atomic_write_bytes(folder / "importance.csv", frame.to_csv(index=False).encode("utf-8"))
    atomic_write_bytes(folder / "importance.svg", chart.encode("utf-8"))
    return [folder / "importance.csv", folder / "importance.svg"]


# --- export-best --------------------------------------------------------------------------------------------

def best_trial(frame: pd.DataFrame, metric: str, modality: str | None = None) -> pd.Series:
    from exifray.analysis import best_row, check_metric

    check_metric(frame, metric)
    if modality is not None and modality not in schema.MODALITIES:
        raise ConfigError(f"--modality must be image, exif or fusion, got {modality!r}")
    rows = frame[(frame["status"] == schema.STATUS_COMPLETE) & frame["checkpoint"].notna()]
    if modality is not None:
        rows = rows[rows["modality"] == modality]
    best = best_row(rows, metric)
    if best is None:
        what = f" {modality}" if modality else ""
        raise InputNotFoundError(f"no complete{what} trial with a checkpoint and a {metric} value to export")
    return best


def export_best(experiment_path: str, out: str | Path, metric: str | None = None,
                modality: str | None = None) -> dict[str, Any]:
    """Copy the best trial's final checkpoint into a self-contained bundle at `out` (created whole or not at all)."""
    from exifray import __version__

    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"--out {out} exists and is not empty; choose a new folder")
    experiment = open_experiment(experiment_path)
    metric = metric or experiment.space.metrics[0]
    row = best_trial(experiment.frame, metric, modality)
    fs, checkpoint = experiment.files.fs, str(row["checkpoint"])
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-bundle-", dir=target.parent))
    try:
        for name in TRIAL_FILES:
            try:
                with fs.open_input_stream(f"{checkpoint}/{name}") as source:
                    (staging / name).write_bytes(source.readall())
            except FileNotFoundError:
                raise InputNotFoundError(f"trial {row['trial_id']}'s checkpoint {checkpoint} lacks {name}") from None
        settings = json.loads((staging / schema.SETTINGS_FILE).read_text(encoding="utf-8"))
        manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "exifray_version": __version__,
                    "experiment": experiment.name, "trial_id": str(row["trial_id"]), "selected_by": metric,
                    "selected_value": float(row[metric]), "modality": settings["modality"],
                    "classes": settings["classes"], "label_mode": settings["label_mode"],
                    "image_size": settings.get("image_size"), "preprocessing": settings.get("preprocessing"),
                    "exif_tags": settings["exif_encoder"]["tags"], "files": list(TRIAL_FILES)}
        (staging / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
