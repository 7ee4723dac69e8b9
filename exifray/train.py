"""One trial: build the model, train in two phases, report every epoch, evaluate once on test.

    exifray train --data data/dataset --out runs/fusion --modality fusion --backbone TestTinyCNN --epochs 5

`run_trial` is the function the sweep calls inside each Ray Tune trial; it needs no Ray itself. Every
epoch it reports `val_loss, val_f1_macro, val_f1_micro, val_accuracy, emissions_kg, energy_kwh,
epoch_time_s` through `report`; at the end it returns those plus `test_f1_macro, test_f1_micro,
test_accuracy, train_time_s, params, inference_ms`. Validation loss drives early stopping and picks the
weights kept; the test split is touched exactly once, after training.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exifray import schema
from exifray.config import TrialConfig
from exifray.data.dataset import DatasetArrays, SplitArrays, load_arrays, read_card
from exifray.errors import ConfigError, ExifrayError
from exifray.exif.encode import ExifEncoder
from exifray.fsutil import atomic_write_json, atomic_write_jsonl
from exifray.metrics import crossentropy, f1_scores

logger = logging.getLogger(__name__)

Report = Callable[[dict[str, Any], Any, bool], None]  # (metrics, keras model, val loss improved) → None


class TrialFailed(ExifrayError, RuntimeError):
    """Training diverged (NaN loss) or could not run; the sweep records the trial as errored."""


@dataclass
class TrialResult:
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    model: Any = field(repr=False)
    settings: dict[str, Any]


def configure_tensorflow(threads: int | None) -> None:
    """Thread pools sized to the trial's CPUs and GPU memory growth, before TF runs any op."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: growth was set (or not) earlier
            logger.debug("GPU memory growth could not be changed after TF initialised")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        except RuntimeError:
            logger.debug("TF thread pools already fixed in this process")


def resolve_image_size(config: TrialConfig, card: dict[str, Any]) -> int | None:
    if not config.uses_image:
        return None
    sizes = list(card["image_sizes"])
    size = config.image_size if config.image_size is not None else sizes[0]
    if size not in sizes:
        raise ConfigError(f"image_size {size} is not in the dataset; it has sizes {sizes}")
    return int(size)


def model_inputs(split: SplitArrays, config: TrialConfig, encoder: ExifEncoder) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    if config.uses_image:
        assert split.images is not None
        inputs["image"] = split.images
    if config.uses_exif:
        inputs["exif"] = encoder.transform(split.exif_columns())
    return inputs


def array_batches(inputs: dict[str, np.ndarray], targets: np.ndarray | None, batch_size: int, *,
                  shuffle: bool = False, seed: int = 0) -> Any:
    """A Keras PyDataset that slices one batch at a time out of the given arrays.

    Handing Keras whole numpy arrays makes it convert them into TensorFlow tensors, i.e. one private copy
    of the dataset per trial process. Slicing batch by batch keeps the arrays where they are: in a sweep,
    read-only views of the one copy in Ray's object store that every trial on the node shares."""
    import keras

    n = len(next(iter(inputs.values())))

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.order = np.arange(n)
            self.rng = np.random.default_rng(seed)
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return math.ceil(n / batch_size)

        def __getitem__(self, index: int) -> Any:
            rows = self.order[index * batch_size:(index + 1) * batch_size]
            x = {key: value[rows] for key, value in inputs.items()}
            return (x, targets[rows]) if targets is not None else (x,)

        def on_epoch_end(self) -> None:
            if shuffle:
                self.rng.shuffle(self.order)

    return ArrayBatches()


class _EpochLoop:
    """Keras callback logic: per-epoch validation metrics, emissions, report, best weights, patience."""

    def __init__(self, model: Any, val: tuple[dict[str, np.ndarray], np.ndarray], multi_label: bool,
                 emissions: Any, report: Report | None, patience: int, batch_size: int):
        self.model, self.val, self.multi_label = model, val, multi_label
        self.emissions, self.report, self.patience, self.batch_size = emissions, report, patience, batch_size
        self.history: list[dict[str, Any]] = []
        self.best_loss = math.inf
        self.best_weights: list[np.ndarray] | None = None
        self.best_row: dict[str, Any] | None = None
        self.epoch = 0
        self.phase = ""
        self._wait = 0
        self._started = 0.0

    def callback(self, phase: str) -> Any:
        import keras

        loop = self
        loop.phase, loop._wait = phase, 0

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                loop._started = time.perf_counter()
                loop.emissions.start_segment(f"{phase}-epoch{loop.epoch + 1}")

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                loop.end_epoch(logs or {})

        return Callback()

    def end_epoch(self, logs: dict[str, Any]) -> None:
        self.epoch += 1
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            self.emissions.stop_segment()
            raise TrialFailed(f"training loss is {loss} at epoch {self.epoch} ({self.phase}): diverged")
        x_val, y_val = self.val
        probabilities = self.model.predict(array_batches(x_val, None, self.batch_size * 2), verbose=0)
        val_loss = crossentropy(y_val, probabilities, self.multi_label)  # one pass over val, not two
        scores = f1_scores(y_val, probabilities, self.multi_label)
        totals = self.emissions.stop_segment()
        row = {schema.EPOCH: self.epoch, schema.PHASE: self.phase, "loss": loss, schema.VAL_LOSS: val_loss,
               schema.VAL_F1_MACRO: scores["f1_macro"], schema.VAL_F1_MICRO: scores["f1_micro"],
               schema.VAL_ACCURACY: scores["accuracy"], schema.EMISSIONS_KG: totals.emissions_kg,
               schema.ENERGY_KWH: totals.energy_kwh, schema.EPOCH_TIME_S: time.perf_counter() - self._started}
        self.history.append(row)
        improved = val_loss < self.best_loss
        if improved:
            self.best_loss, self.best_row, self._wait = val_loss, row, 0
            self.best_weights = self.model.get_weights()
        else:
            self._wait += 1
            if self._wait >= self.patience:
                self.model.stop_training = True
        logger.info("epoch %d (%s): loss %.4f val_loss %.4f val_f1_macro %.4f val_accuracy %.4f emissions %.2e kg",
                    self.epoch, self.phase, loss, val_loss, scores["f1_macro"], scores["accuracy"], totals.emissions_kg)
        if self.report is not None:
            self.report(dict(row), self.model, improved)

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def _compile(model: Any, learning_rate: float, multi_label: bool) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="binary_crossentropy" if multi_label else "categorical_crossentropy")


def inference_ms(model: Any, inputs: dict[str, np.ndarray], batch_size: int) -> float:
    """Milliseconds per photo for batched prediction, after one warm-up call."""
    n = len(next(iter(inputs.values())))
    if n == 0:
        return float("nan")
    sample = {key: value[: min(n, 256)] for key, value in inputs.items()}
    model.predict(sample, batch_size=batch_size, verbose=0)
    started = time.perf_counter()
    model.predict(sample, batch_size=batch_size, verbose=0)
    return (time.perf_counter() - started) * 1000 / len(next(iter(sample.values())))


def run_trial(config: TrialConfig, data: DatasetArrays | str | Path, *, report: Report | None = None,
              out_dir: str | Path | None = None, emissions_dir: str | None = None) -> TrialResult:
    """Train and evaluate one configuration; `data` is a loaded dataset or a DATASET DIR path."""
    from exifray.emissions import TrialEmissions
    from exifray.models.finetune import freeze, unfreeze_top

    from exifray.models.fusion import build_model, resolve_weights
    from exifray.models.registry import get_backbone_spec

    # Everything a user can get wrong is checked before TensorFlow loads (it is slow and noisy to start).
    if not isinstance(data, DatasetArrays):
        data = load_arrays(data, resolve_image_size(config, read_card(data)))
    image_size = resolve_image_size(config, data.card)
    if config.uses_image and data.image_size != image_size:
        raise ConfigError(f"the loaded arrays hold {data.image_size} px images, the trial wants {image_size}")
    if len(data.train) == 0 or len(data.val) == 0:
        raise ConfigError(f"the dataset needs train and val photos, has {len(data.train)} / {len(data.val)}")
    if config.uses_image:
        resolve_weights(config.weights, get_backbone_spec(config.backbone))
    encoder = data.encoder.subset(config.exif_tags)
    configure_tensorflow(config.threads)
    x_train, x_val, x_test = (model_inputs(s, config, encoder) for s in (data.train, data.val, data.test))
    built = build_model(config, len(data.classes), encoder.width, data.multi_label, image_size)
    model = built.model
    emissions = TrialEmissions(config.country, output_dir=emissions_dir)
    loop = _EpochLoop(model, (x_val, data.val.targets), data.multi_label, emissions, report,
                      config.early_stopping_patience, config.batch_size)
    started = time.perf_counter()
    two_phase = built.backbone is not None and built.pretrained
    if two_phase:
        freeze(built.backbone)
    _compile(model, config.learning_rate, data.multi_label)
    train_batches = array_batches(x_train, data.train.targets, config.batch_size, shuffle=True, seed=config.seed)
    model.fit(train_batches, epochs=config.epochs, verbose=0,
              callbacks=[loop.callback("head" if two_phase else "train")])
    fine_tuned = 0
    if two_phase and config.fine_tune_layers > 0 and config.fine_tune_epochs > 0:
        loop.restore_best()
        fine_tuned = unfreeze_top(built.backbone, config.fine_tune_layers)
        _compile(model, config.learning_rate * config.fine_tune_learning_rate_factor, data.multi_label)
        model.fit(train_batches, epochs=config.fine_tune_epochs, verbose=0, callbacks=[loop.callback("fine_tune")])
    elif config.fine_tune_layers > 0 and not two_phase and config.uses_image:
        logger.info("weights are 'none': the backbone trains from scratch in one phase; fine_tune_layers=%d "
                    "has no effect", config.fine_tune_layers)
    train_time = time.perf_counter() - started
    loop.restore_best()
    emissions.start_segment("test")
    test = f1_scores(data.test.targets, model.predict(array_batches(x_test, None, config.batch_size * 2), verbose=0),
                     data.multi_label) if len(data.test) else {"f1_macro": math.nan, "f1_micro": math.nan,
                                                                 "accuracy": math.nan}
    latency = inference_ms(model, x_test if len(data.test) else x_val, config.batch_size)
    totals = emissions.close()
    assert loop.best_row is not None
    metrics = {**{key: loop.best_row[key] for key in (schema.VAL_LOSS, schema.VAL_F1_MACRO, schema.VAL_F1_MICRO,
                                                      schema.VAL_ACCURACY)},
               schema.TEST_F1_MACRO: test["f1_macro"], schema.TEST_F1_MICRO: test["f1_micro"],
               schema.TEST_ACCURACY: test["accuracy"], schema.TRAIN_TIME_S: train_time,
               schema.PARAMS: int(model.count_params()), schema.INFERENCE_MS: latency,
               schema.EMISSIONS_KG: totals.emissions_kg, schema.ENERGY_KWH: totals.energy_kwh,
               schema.EPOCH_TIME_S: float(np.mean([row[schema.EPOCH_TIME_S] for row in loop.history])),
               "epochs": loop.epoch, "best_epoch": loop.best_row[schema.EPOCH],
               "fine_tuned_layers": fine_tuned, "cpu_energy_kwh": totals.cpu_energy_kwh,
               "gpu_energy_kwh": totals.gpu_energy_kwh, "ram_energy_kwh": totals.ram_energy_kwh,
               "emissions_tracking_mode": emissions.tracking_mode, "country": config.country,
               "train_photos": len(data.train), "val_photos": len(data.val), "test_photos": len(data.test)}
    settings = {**config.to_dict(), "image_size": image_size, "classes": data.classes,
                "label_mode": data.card["label_mode"], "label_level": data.card["label_level"],
                "exif_encoder": encoder.to_dict(),
                "preprocessing": built.spec.preprocessing if built.spec else None}
    result = TrialResult(metrics, loop.history, model, settings)
    if out_dir is not None:
        save_trial(result, out_dir)
    return result


def save_trial(result: TrialResult, out_dir: str | Path) -> None:
    """`model.keras`, `metrics.json`, `settings.json` and `history.jsonl`, each written atomically."""
    import tempfile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-model-") as staging:
        staged = Path(staging) / schema.MODEL_FILE
        result.model.save(staged)
        staged.replace(out / schema.MODEL_FILE)
    atomic_write_json(out / schema.METRICS_FILE, _jsonable(result.metrics))
    atomic_write_json(out / schema.SETTINGS_FILE, result.settings)
    atomic_write_jsonl(out / schema.HISTORY_FILE, (_jsonable(row) for row in result.history))


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: write null instead."""
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in json.loads(json.dumps(row, default=float)).items()}
