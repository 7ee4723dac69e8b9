"""Trained models outside the sweep: the best trial exported as a bundle, evaluation, permutation importance.

    exifray export-best experiments/fusion --out models/best-fusion --modality fusion
    exifray evaluate models/best-fusion --data data/dataset                  # test macro F1 etc. as JSON
    exifray importance models/best-fusion --data data/dataset --out reports/importance

A bundle (and a trial's final checkpoint, which has the same files) holds `model.keras`, `settings.json`
(the trial's settings plus classes, label mode, image size, preprocessing and the fitted EXIF encoder
statistics), `metrics.json`, `history.jsonl` and, for a bundle, `bundle.json` (what it is and where it came
from, by name only). Nothing in it points back into the experiment directory. A head-only trial's final
checkpoint has `head.keras` and `backbone.json` in place of `model.keras`: loading it assembles the full model
(`models.assembly`), and `export-best` writes the assembled `model.keras` into the bundle.
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
from exifray.experiment import HEAD_ONLY_TRIAL_FILES, TRIAL_FILES, open_experiment

if TYPE_CHECKING:
    import keras
    import pyarrow.fs as pafs

    from exifray.data.dataset import SplitArrays
    from exifray.data.photo import DecodeParams
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
    bundle_id: str = ""  # sha256 over model.keras and settings.json (first 16 hex digits): what predictions cite

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

    @property
    def classes(self) -> list[str]:
        return [str(name) for name in self.settings["classes"]]

    @property
    def image_size(self) -> int | None:
        size = self.settings.get("image_size")
        return int(size) if size is not None and self.uses_image else None

    @property
    def thresholds(self) -> list[float] | None:
        """Per-class thresholds fitted on the validation split (multi-label models; `--threshold calibrated`)."""
        values = self.settings.get("thresholds")
        return [float(v) for v in values] if values else None

    def decode_params(self) -> DecodeParams:
        """How the model's training photos were decoded; a user's photo is decoded the same way. A model from
        before the card recorded it was decoded with its own size as the draft target."""
        from exifray.data.photo import DecodeParams

        size = self.image_size or 32  # an EXIF-only model still reads the photo (for its EXIF); pixels unused
        return DecodeParams.recorded((size,), self.settings.get("decode"))

    def photo_inputs(self, images: np.ndarray | None, exif: list[dict[str, float | None]]) -> dict[str, np.ndarray]:
        """Model inputs from decoded photos: `images` (N, S, S, 3) uint8 at the model's size, and per photo its
        EXIF values by tag (`ExifReading.as_floats()`; a photo without EXIF takes the encoder's missing path)."""
        inputs: dict[str, np.ndarray] = {}
        if self.uses_image:
            if images is None:
                raise DataError(f"{self.path} is an {self.modality} model and needs the photos' pixels")
            inputs["image"] = images
        if self.uses_exif:
            encoder = self.encoder()
            inputs["exif"] = encoder.transform({tag: [row.get(tag) for row in exif] for tag in encoder.tags})
        return inputs

    def encoder(self) -> ExifEncoder:
        from exifray.exif.encode import ExifEncoder

        return ExifEncoder.from_dict(self.settings["exif_encoder"])

    def inputs(self, split: SplitArrays) -> dict[str, np.ndarray]:
        inputs: dict[str, np.ndarray] = {}
        if self.uses_image:
            if split.images is None:
                raise DataError(f"{self.path} is an {self.modality} model, but the split was loaded without images")
            inputs["image"] = split.pixels
        if self.uses_exif:
            inputs["exif"] = self.encoder().transform(split.exif_columns())
        return inputs

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        from exifray.train import predict_arrays

        return predict_arrays(self.model, inputs, int(self.settings.get("batch_size", 32)) * 2)


def load_model(path: str | Path) -> LoadedModel:
    """A bundle or a trial's final checkpoint folder, local or at a pyarrow URI (`s3://bucket/models/best`)."""
    from exifray.fsutil import is_uri

    if is_uri(str(path)):
        with tempfile.TemporaryDirectory(prefix="exifray-bundle-") as local:
            loaded = load_model(_download_bundle(str(path), Path(local)))
        loaded.path = str(path)
        return loaded
    folder = Path(path)
    if not folder.is_dir():
        raise InputNotFoundError(f"model folder does not exist: {path}")
    from exifray.models.assembly import assemble_model, is_head_only

    head_only = is_head_only(folder)
    missing = [name for name in (schema.SETTINGS_FILE,) + (() if head_only else (schema.MODEL_FILE,))
               if not (folder / name).is_file()]
    if missing:
        raise InputNotFoundError(f"{path} is not a bundle or a final trial checkpoint: it lacks {', '.join(missing)} "
                                 f"(export one with `exifray export-best`)")
    settings = json.loads((folder / schema.SETTINGS_FILE).read_text(encoding="utf-8"))
    metrics_path = folder / schema.METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    import keras

    model = assemble_model(folder) if head_only else keras.models.load_model(folder / schema.MODEL_FILE,
                                                                             compile=False)
    return LoadedModel(str(folder), model, settings, metrics, model_id(folder))


def _download_bundle(uri: str, local: Path) -> Path:
    """The files of a bundle at `uri` copied into `local` (those it has of the bundle's file names)."""
    from exifray.fsutil import filesystem_and_path

    fs, root = filesystem_and_path(uri)
    for name in (*TRIAL_FILES, *schema.HEAD_ONLY_FILES, *schema.CODECARBON_FILES, BUNDLE_FILE):
        try:
            with fs.open_input_stream(f"{root.rstrip('/')}/{name}") as source:
                (local / name).write_bytes(source.readall())
        except FileNotFoundError:
            continue
    return local


def model_id(folder: str | Path) -> str:
    """A bundle's identity: sha256 over its model (a head-only trial's: head and backbone identity) and settings
    files (16 hex digits)."""
    import hashlib

    digest = hashlib.sha256()
    for name in (schema.MODEL_FILE, *schema.HEAD_ONLY_FILES, schema.SETTINGS_FILE):
        if name == schema.SETTINGS_FILE or (Path(folder) / name).is_file():
            digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()[:16]


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

def ranked_trials(frame: pd.DataFrame, metric: str, modality: str | None = None) -> pd.DataFrame:
    """Complete trials with a checkpoint and a `metric` value, best first."""
    from exifray.analysis import check_metric, metric_mode

    check_metric(frame, metric)
    if modality is not None and modality not in schema.MODALITIES:
        raise ConfigError(f"--modality must be image, exif or fusion, got {modality!r}")
    rows = frame[(frame["status"] == schema.STATUS_COMPLETE) & frame["checkpoint"].notna()]
    if modality is not None:
        rows = rows[rows["modality"] == modality]
    rows = rows[pd.to_numeric(rows[metric], errors="coerce").notna()]
    if rows.empty:
        what = f" {modality}" if modality else ""
        raise InputNotFoundError(f"no complete{what} trial with a checkpoint and a {metric} value to export")
    return rows.sort_values(metric, ascending=metric_mode(metric) != "max", kind="stable")


def best_trial(frame: pd.DataFrame, metric: str, modality: str | None = None) -> pd.Series:
    best = ranked_trials(frame, metric, modality).iloc[0]
    assert isinstance(best, pd.Series)
    return best


def measured_inference_ms(loaded: LoadedModel, photos: int = 64) -> float:
    """Milliseconds per photo for batched prediction of this model on this machine (synthetic inputs of the
    model's shapes; the number the latency budget of `export-best --max-inference-ms` is checked against)."""
    from exifray.models.runtime import inference_ms

    inputs = {tensor.name.split(":")[0]: np.zeros((photos, *tensor.shape[1:]), dtype="float32")
              for tensor in loaded.model.inputs}
    return inference_ms(loaded.model, inputs, int(loaded.settings.get("batch_size", 32)))


def _copy_checkpoint(experiment_fs: pafs.FileSystem, checkpoint: str, staging: Path, trial_id: str) -> None:
    """The final folder's files (a head-only trial's too); CodeCarbon's files too where the trial has them
    (trials before they were kept do not)."""
    copied = []
    for name in (*TRIAL_FILES, *schema.HEAD_ONLY_FILES, *schema.CODECARBON_FILES):
        try:
            with experiment_fs.open_input_stream(f"{checkpoint}/{name}") as source:
                (staging / name).write_bytes(source.readall())
            copied.append(name)
        except FileNotFoundError:
            continue
    required = HEAD_ONLY_TRIAL_FILES if schema.MODEL_FILE not in copied else TRIAL_FILES
    missing = [name for name in required if name not in copied]
    if missing:
        raise InputNotFoundError(f"trial {trial_id}'s checkpoint {checkpoint} lacks {', '.join(missing)}")


def _assembled_in_place(bundle: Path) -> None:
    """A head-only trial's files in `bundle` replaced by its assembled `model.keras`: a bundle is self-contained
    (its backbone's weights file may not travel with it)."""
    from exifray.models.assembly import assemble_model, is_head_only

    if not is_head_only(bundle):
        return
    assemble_model(bundle).save(bundle / schema.MODEL_FILE)
    for name in schema.HEAD_ONLY_FILES:
        (bundle / name).unlink()


def _within_budget(experiment_fs: pafs.FileSystem, ranked: pd.DataFrame, budget_ms: float, candidates: int,
                   scratch: Path) -> tuple[pd.Series, list[dict[str, object]], Path]:
    """The best of the top `candidates` trials whose model, re-measured here, predicts within `budget_ms` per
    photo; what was measured; and the folder its checkpoint was copied into (the bundle's files)."""
    measured = []
    for _, row in ranked.head(candidates).iterrows():
        folder = scratch / f"candidate-{row['trial_id']}"
        folder.mkdir()
        _copy_checkpoint(experiment_fs, str(row["checkpoint"]), folder, str(row["trial_id"]))
        latency = measured_inference_ms(load_model(folder))
        measured.append({"trial_id": str(row["trial_id"]), "inference_ms": latency})
        logger.info("trial %s: %.3f ms per photo here", row["trial_id"], latency)
        if latency <= budget_ms:
            return row, measured, folder
    raise InputNotFoundError(f"none of the best {len(measured)} trials predicts within {budget_ms} ms per photo on "
                             f"this machine: {measured}")


def export_best(experiment_path: str, out: str | Path, metric: str | None = None, modality: str | None = None,
                *, data: str | None = None, max_inference_ms: float | None = None,
                candidates: int = 5) -> dict[str, Any]:
    """Copy the best trial's final checkpoint into a self-contained bundle at `out` (created whole or not at all).
    `max_inference_ms`: the best of the top `candidates` whose latency, re-measured on this machine, is within it.
    `data`: the DATASET DIR the trial trained on; a multi-label model's per-class thresholds are fitted again on
    its validation split (otherwise the bundle keeps those the trial fitted on the same split)."""
    from exifray.version import __version__

    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"--out {out} exists and is not empty; choose a new folder")
    experiment = open_experiment(experiment_path)
    metric = metric or experiment.space.metrics[0]
    ranked = ranked_trials(experiment.frame, metric, modality)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-bundle-", dir=target.parent))
    try:
        measured: list[dict[str, object]] = []
        if max_inference_ms is not None:  # the chosen candidate's files are already copied: they are the bundle
            row, measured, bundle = _within_budget(experiment.files.fs, ranked, max_inference_ms, candidates,
                                                   staging)
        else:
            row = ranked.iloc[0]
            bundle = staging / "bundle"
            bundle.mkdir()
            _copy_checkpoint(experiment.files.fs, str(row["checkpoint"]), bundle, str(row["trial_id"]))
        _assembled_in_place(bundle)
        settings = json.loads((bundle / schema.SETTINGS_FILE).read_text(encoding="utf-8"))
        if data is not None and settings["label_mode"] == "multi":
            settings["thresholds"] = _fit_thresholds(bundle, data)
            (bundle / schema.SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "exifray_version": __version__,
                    "bundle_id": model_id(bundle), "experiment": experiment.name, "trial_id": str(row["trial_id"]),
                    "selected_by": metric, "selected_value": float(row[metric]), "modality": settings["modality"],
                    "classes": settings["classes"], "label_mode": settings["label_mode"],
                    "image_size": settings.get("image_size"), "preprocessing": settings.get("preprocessing"),
                    "decode": settings.get("decode"), "thresholds": settings.get("thresholds"),
                    "exif_tags": settings["exif_encoder"]["tags"],
                    "files": sorted(path.name for path in bundle.iterdir())}
        if max_inference_ms is not None:
            manifest["latency_budget_ms"] = max_inference_ms
            manifest["measured_inference_ms"] = measured
        (bundle / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            target.rmdir()
        bundle.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _fit_thresholds(bundle: Path, data: str) -> list[float]:
    from exifray.tagging import fit_thresholds

    loaded = load_model(bundle)
    arrays = load_split(loaded, data, "val")
    return fit_thresholds(arrays.targets, loaded.predict(loaded.inputs(arrays)))
