"""One trial: build the model, train in two phases, report every epoch, evaluate once on test.

    exifray train --data data/dataset --out runs/fusion --modality fusion --backbone TestTinyCNN --epochs 5

`run_trial` is the function the sweep calls inside each Ray Tune trial; it needs no Ray itself. Every
epoch it reports `val_loss, val_f1_macro, val_f1_micro, val_accuracy, emissions_kg, energy_kwh,
epoch_time_s` through `report`; at the end it returns those plus `test_f1_macro, test_f1_micro,
test_accuracy, train_time_s, params, inference_ms`. Validation loss drives early stopping and picks the
weights kept; the test split is touched exactly once, after training.

Every epoch can be saved as a resumable state (`TrainingState.save`: the model with its optimizer state,
the best weights so far, the epoch history, the patience counter and the cumulative emissions). `run_trial(...,
resume=FOLDER)` continues from such a folder: a trial whose node was lost restarts at its next epoch, in the
phase it was in, instead of from scratch. The energy of the interrupted epoch itself was never measured.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from exifray import schema
from exifray.config import TrialConfig
from exifray.data.dataset import DatasetArrays, SplitArrays, load_arrays, read_card
from exifray.errors import ConfigError, ExifrayError
from exifray.exif.encode import ExifEncoder
from exifray.experiment import BEST_WEIGHTS_FILE, RESUME_FILE, save_trial
from exifray.fsutil import atomic_write_json, jsonable
from exifray.metrics import crossentropy, f1_scores
from exifray.models.runtime import configure_tensorflow, frozen_backbone_cost, inference_ms

if TYPE_CHECKING:
    import keras

    from exifray.emissions import EmissionsTotals, TrialEmissions
    from exifray.feature_cache import CacheAccess, HeadFeatures
    from exifray.models.fusion import BuiltModel

logger = logging.getLogger(__name__)

# A batch: model inputs by name, with targets when training.
Batch = tuple[dict[str, np.ndarray], np.ndarray] | tuple[dict[str, np.ndarray]]
Report = Callable[[dict[str, Any], "TrainingState"], None]  # (epoch metrics, state after the epoch) → None


class TrialFailed(ExifrayError, RuntimeError):
    """Training diverged (NaN loss) or could not run; the sweep records the trial as errored."""


@dataclass
class TrialResult:
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    model: keras.Model = field(repr=False)  # the full model, or the head alone when `backbone` is set
    settings: dict[str, Any]
    emissions_files: dict[str, bytes] = field(default_factory=dict, repr=False)  # CodeCarbon's CSV files
    backbone: dict[str, Any] | None = None  # a head-only trial's frozen backbone (`models.assembly`)


def model_inputs(split: SplitArrays, config: TrialConfig, encoder: ExifEncoder) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    if config.uses_image:
        inputs["image"] = split.pixels
    if config.uses_exif:
        inputs["exif"] = encoder.transform(split.exif_columns())
    return inputs


def predict_arrays(model: keras.Model, inputs: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """The model's outputs for every row, predicted in batches of exactly `batch_size`: the last batch is padded
    with copies of its final row, whose outputs are dropped. A shorter last batch would trace a second predict
    function (0.1 s for a small head, more for a backbone) every time a trial predicts a split of a new size.
    Batch by batch through `predict_on_batch`: `model.predict` builds a new data adapter and iterator per call,
    0.08 s that a trial predicting its validation split every epoch paid every epoch."""
    n = len(next(iter(inputs.values())))
    batches = array_batches(inputs, None, batch_size, pad=True)
    outputs = [np.asarray(model.predict_on_batch(batches[index][0])) for index in range(len(batches))]
    return np.concatenate(outputs)[:n]


def array_batches(inputs: dict[str, np.ndarray], targets: np.ndarray | None, batch_size: int, *,
                  shuffle: bool = False, seed: int = 0, start_epoch: int = 0,
                  pad: bool = False) -> keras.utils.PyDataset:
    """A Keras PyDataset that slices one batch at a time out of the given arrays.

    Handing Keras whole numpy arrays makes it convert them into TensorFlow tensors, i.e. one private copy
    of the dataset per trial process. Slicing batch by batch keeps the arrays where they are: in a sweep,
    read-only views of the one copy in Ray's object store that every trial on the node shares. Streamed images
    (`ShardImages`) are sliced the same way; they decide a shuffled epoch's order (within buffers of shards,
    seeded by seed and epoch) and read ahead of it, and unshuffled passes go in shard order."""
    import keras

    from exifray.data.stream import ShardImages

    n = len(next(iter(inputs.values())))
    streamed = None
    for value in inputs.values():
        if isinstance(value, ShardImages):
            streamed = value

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = start_epoch
            self.order = np.arange(n)
            self.rng = np.random.default_rng((seed, start_epoch))  # a resumed trial does not replay epoch 1's order
            self._new_order()

        def _new_order(self) -> None:
            if streamed is not None:
                self.order = streamed.epoch_order(seed, self.epoch) if shuffle else np.arange(n)
                if not shuffle:
                    streamed.sequential()
            elif shuffle:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return math.ceil(n / batch_size)

        def __getitem__(self, index: int) -> Batch:
            rows = self.order[index * batch_size:(index + 1) * batch_size]
            if pad and len(rows) < batch_size:  # `predict_arrays`: every batch of one shape
                rows = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows))])
            x = {key: value[rows] for key, value in inputs.items()}
            return (x, targets[rows]) if targets is not None else (x,)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self._new_order()

    return ArrayBatches()


class TrainingState:
    """Where training stands after each epoch, as a Keras callback drives it: per-epoch validation metrics,
    emissions, the report, the best weights, patience. `save` writes it as a resumable folder."""

    def __init__(self, val_targets: np.ndarray, multi_label: bool, emissions: TrialEmissions, report: Report | None,
                 patience: int, batch_size: int):
        self._model: keras.Model | None = None  # `use` names it
        self.val: tuple[dict[str, np.ndarray], np.ndarray] = ({}, val_targets)
        self.multi_label = multi_label
        self.emissions, self.report, self.patience, self.batch_size = emissions, report, patience, batch_size
        self.history: list[dict[str, Any]] = []
        self.best_loss = math.inf
        self.best_weights: list[np.ndarray] | None = None
        self.best_row: dict[str, Any] | None = None
        self.epoch = 0  # epochs done, both phases
        self.phase = ""
        self.phase_epoch = 0  # epochs done in this phase
        self.phase_done = False  # early stopping ended this phase
        self.phase_epochs = 0  # epochs this phase runs at most
        self.cheap_epochs = False  # this phase trains a head on cached features or an EXIF-only MLP: cheap to redo
        self.unsaved_s = 0.0  # training time since the last resume checkpoint (`sweep._report_epoch` keeps it)
        self.wait = 0
        self.resumed_from_epoch = 0
        self._train_time_before = 0.0  # train time of earlier attempts (a resumed trial)
        self._train_started = time.perf_counter()
        self._started = 0.0
        self.first_epoch_at: float | None = None  # time.time() when the first epoch of this attempt began
        self.report_extra: dict[str, object] = {}  # reported with every epoch (the feature cache's outcome)

    @property
    def train_time_s(self) -> float:
        return self._train_time_before + time.perf_counter() - self._train_started

    @property
    def model(self) -> keras.Model:
        assert self._model is not None, "use() names the model to train first"
        return self._model

    def use(self, model: keras.Model, val_inputs: dict[str, np.ndarray]) -> None:
        """Train and validate `model` from now on (the head on cached features, or the full model). The best
        weights so far move over: they are restored into the current model, then read from the new one (the two
        share their head layers)."""
        if self._model is not None and model is not self._model and self.best_weights is not None:
            self._model.set_weights(self.best_weights)
            self.best_weights = model.get_weights()
        self._model, self.val = model, (val_inputs, self.val[1])

    def start_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase, self.phase_epoch, self.phase_done, self.wait = phase, 0, False, 0

    def callback(self, phase: str) -> keras.callbacks.Callback:
        import keras

        loop = self
        self.start_phase(phase)

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                loop._started = time.perf_counter()
                loop.first_epoch_at = loop.first_epoch_at or time.time()
                loop.emissions.start_segment(f"{phase}-epoch{loop.epoch + 1}")

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                loop.end_epoch(logs or {})

        return Callback()

    def end_epoch(self, logs: dict[str, float]) -> None:
        self.epoch += 1
        self.phase_epoch += 1
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            self.emissions.stop_segment()
            raise TrialFailed(f"training loss is {loss} at epoch {self.epoch} ({self.phase}): diverged")
        x_val, y_val = self.val
        probabilities = predict_arrays(self.model, x_val, self.batch_size * 2)
        val_loss = crossentropy(y_val, probabilities, self.multi_label)  # one pass over val, not two
        scores = f1_scores(y_val, probabilities, self.multi_label)
        totals = self.emissions.stop_segment()
        row = {schema.EPOCH: self.epoch, schema.PHASE: self.phase, "loss": loss, schema.VAL_LOSS: val_loss,
               schema.VAL_F1_MACRO: scores["f1_macro"], schema.VAL_F1_MICRO: scores["f1_micro"],
               schema.VAL_ACCURACY: scores["accuracy"], schema.EMISSIONS_KG: totals.emissions_kg,
               schema.ENERGY_KWH: totals.energy_kwh, schema.EPOCH_TIME_S: time.perf_counter() - self._started}
        self.history.append(row)
        if val_loss < self.best_loss:
            self.best_loss, self.best_row, self.wait = val_loss, row, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
                self.phase_done = True
        logger.info("epoch %d (%s): loss %.4f val_loss %.4f val_f1_macro %.4f val_accuracy %.4f emissions %.2e kg",
                    self.epoch, self.phase, loss, val_loss, scores["f1_macro"], scores["accuracy"], totals.emissions_kg)
        if self.report is not None:
            self.report(dict(row), self)

    @property
    def phase_ending(self) -> bool:
        """The epoch just done is this phase's last (its epochs ran out, or early stopping ended it)."""
        return self.phase_done or self.phase_epoch >= self.phase_epochs

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def save(self, folder: str | Path) -> None:
        """The model with its optimizer state, the best weights so far and `resume.json`: enough to continue."""
        out = Path(folder)
        self.model.save(out / schema.MODEL_FILE)
        if self.best_weights is not None:
            np.savez(out / BEST_WEIGHTS_FILE, *self.best_weights)
        totals = self.emissions.totals
        atomic_write_json(out / RESUME_FILE, {
            "epoch": self.epoch, "phase": self.phase, "phase_epoch": self.phase_epoch,
            "phase_done": self.phase_done, "wait": self.wait, "best_loss": self.best_loss,
            "best_epoch": self.best_row[schema.EPOCH] if self.best_row else None,
            "history": [jsonable(row) for row in self.history], "train_time_s": self.train_time_s,
            "weight_shapes": _weight_shapes(self.model),
            "emissions": {name: getattr(totals, name) for name in totals.__dataclass_fields__}})
        for name, data in self.emissions.files().items():  # CodeCarbon's rows so far travel with the checkpoint
            (out / name).write_bytes(data)

    def resume(self, folder: str | Path, state: dict[str, Any]) -> None:
        """Load a saved state (`saved_state(folder)`) into this freshly built model, compiled for the phase the
        state was saved in."""
        from exifray.emissions import EmissionsTotals

        path = Path(folder)
        try:
            if state["weight_shapes"] != _weight_shapes(self.model):  # Keras would skip mismatched layers
                raise TrialFailed(f"the checkpoint in {folder} holds a different model than this trial builds "
                                  f"(weight shapes differ)")
            self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(path / schema.MODEL_FILE)  # a .keras file: weights and optimizer state
            if state["best_epoch"] is not None:
                with np.load(path / BEST_WEIGHTS_FILE) as best:
                    self.best_weights = [best[f"arr_{i}"] for i in range(len(best.files))]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise TrialFailed(f"cannot resume from the checkpoint in {folder}: {type(exc).__name__}: {exc}") from exc
        self.history = [{key: (math.nan if value is None else value) for key, value in row.items()}
                        for row in state["history"]]
        self.epoch, self.phase, self.phase_epoch = state["epoch"], state["phase"], state["phase_epoch"]
        self.phase_done, self.wait, self.best_loss = state["phase_done"], state["wait"], state["best_loss"]
        self.best_row = next((row for row in self.history if row[schema.EPOCH] == state["best_epoch"]), None)
        self._train_time_before, self._train_started = state["train_time_s"], time.perf_counter()
        self.emissions.totals = EmissionsTotals(**state["emissions"])
        self.emissions.restore_files(path)  # this attempt appends to the rows the checkpoint carries
        self.resumed_from_epoch = self.epoch
        logger.info("resumed at epoch %d (%s, epoch %d of the phase) from %s", self.epoch, self.phase,
                    self.phase_epoch, folder)


def _weight_shapes(model: keras.Model) -> list[list[int]]:
    return [list(weight.shape) for weight in model.weights]


def saved_state(folder: str | Path) -> dict[str, Any]:
    """The `resume.json` of a folder written by `TrainingState.save`."""
    path = Path(folder) / RESUME_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrialFailed(f"cannot resume from {path}: {type(exc).__name__}: {exc}") from exc


def _compile(model: keras.Model, learning_rate: float, multi_label: bool, jit_compile: bool = False,
             steps_per_execution: int = 1) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=jit_compile,
                  loss="binary_crossentropy" if multi_label else "categorical_crossentropy",
                  steps_per_execution=steps_per_execution)


@dataclass(frozen=True)
class Phase:
    """One training phase: its name, epochs, learning rate, and the backbone's state during it (None: leave it
    as built; 0: frozen; N: the top N layers trainable, BatchNorm kept frozen)."""

    name: str
    epochs: int
    learning_rate: float
    unfreeze: int | None


def plan_phases(config: TrialConfig, two_phase: bool) -> list[Phase]:
    """A pretrained backbone: the head with the backbone frozen, then (when asked) fine-tuning the top layers at a
    lower learning rate. Otherwise one phase in which everything trains."""
    if not two_phase:
        return [Phase("train", config.epochs, config.learning_rate, None)]
    phases = [Phase("head", config.epochs, config.learning_rate, 0)]
    if config.fine_tune_layers > 0 and config.fine_tune_epochs > 0:
        phases.append(Phase("fine_tune", config.fine_tune_epochs,
                            config.learning_rate * config.fine_tune_learning_rate_factor, config.fine_tune_layers))
    return phases


def _trial_data(config: TrialConfig, data: DatasetArrays | str | Path) -> DatasetArrays:
    """The loaded dataset, checked against the trial before TensorFlow loads (it is slow and noisy to start)."""
    if not isinstance(data, DatasetArrays):
        card = read_card(data)
        data = load_arrays(data, card.resolve_image_size(config.image_size) if config.uses_image else None)
    if config.uses_image:
        image_size = data.card.resolve_image_size(config.image_size)
        if data.image_size != image_size:
            raise ConfigError(f"the loaded arrays hold {data.image_size} px images, the trial wants {image_size}")
    if len(data.train) == 0 or len(data.val) == 0:
        raise ConfigError(f"the dataset needs train and val photos, has {len(data.train)} / {len(data.val)}")
    return data


def _saved_phase_index(resume: str | Path | None, phases: list[Phase]) -> tuple[dict[str, Any] | None, int]:
    """The saved state to resume from and the index of its phase (0 when starting afresh)."""
    if resume is None:
        return None, 0
    saved = saved_state(resume)
    names = [phase.name for phase in phases]
    if saved["phase"] not in names:
        raise TrialFailed(f"the checkpoint in {resume} is in phase {saved['phase']!r}, which this trial does not have")
    return saved, names.index(saved["phase"])


def _train_phases(loop: TrainingState, built: BuiltModel, phases: list[Phase], config: TrialConfig,
                  inputs: dict[str, dict[str, np.ndarray]], targets: np.ndarray, head: HeadFeatures,
                  resume: str | Path | None) -> int:
    """Every phase in order; a resumed trial fast-forwards to the saved phase and continues after its epoch. A
    frozen-backbone phase trains the head on cached features when `head` allows it. Returns how many backbone
    layers were fine-tuned."""
    from exifray.models.finetune import unfreeze_top

    saved, start = _saved_phase_index(resume, phases)
    fine_tuned = 0
    for index, phase in enumerate(phases[start:], start):
        if index > 0:
            loop.restore_best()  # a phase starts from the best weights of the one before
        on_features = phase.unfreeze == 0 and head.use
        train = head.inputs("train") if on_features else inputs["train"]
        model = built.head_model(head.width) if on_features else built.model
        loop.use(model, head.inputs("val") if on_features else inputs["val"])
        loop.report_extra = head.progress()  # an ASHA-stopped trial's last report still says it
        if phase.unfreeze:  # (a pretrained backbone is frozen when it is built: the head phase needs nothing)
            fine_tuned = unfreeze_top(built.backbone, phase.unfreeze)
        steps = math.ceil(len(targets) / config.batch_size)
        cheap = on_features or not config.uses_image  # a head step, or an EXIF-only MLP's, is tiny
        _compile(loop.model, phase.learning_rate, loop.multi_label, config.jit_compile,
                 min(steps, 32) if cheap else 1)  # tiny steps: dispatch many at once
        if saved is not None and resume is not None and index == start:
            loop.resume(resume, saved)
        loop.start_phase(phase.name)
        loop.phase_epochs, loop.cheap_epochs = phase.epochs, cheap
        if loop.phase_done or loop.phase_epoch >= phase.epochs:
            continue  # the saved state had finished this phase
        batches = array_batches(train, targets, config.batch_size, shuffle=True, seed=config.seed,
                                start_epoch=loop.epoch)
        # shuffle=False: the batches are already shuffled, seeded by (seed, epoch). Keras' own shuffle would
        # request them in an order drawn from Python's global `random` (a resumed trial could not replay it) and
        # jump between a streamed epoch's buffers, re-reading shards for most batches
        loop.model.fit(batches, initial_epoch=loop.phase_epoch, epochs=phase.epochs, verbose=0, shuffle=False,
                       callbacks=[loop.callback(phase.name)])
    if not (head.use and phases[-1].unfreeze == 0):  # a head trained last on features: the backbone stays unbuilt
        loop.use(built.model, inputs["val"])
    return fine_tuned


def _test_scores(model: keras.Model, data: DatasetArrays, x_test: dict[str, np.ndarray], batch_size: int
                 ) -> dict[str, float]:
    if not len(data.test):
        return {"f1_macro": math.nan, "f1_micro": math.nan, "accuracy": math.nan}
    probabilities = predict_arrays(model, x_test, batch_size * 2)
    return f1_scores(data.test.targets, probabilities, data.multi_label)


def _calibrated_thresholds(model: keras.Model, data: DatasetArrays, x_val: dict[str, np.ndarray], batch_size: int
                           ) -> list[float] | None:
    """A multi-label model's per-class thresholds with the best validation F1 (`--threshold calibrated`)."""
    from exifray.tagging import fit_thresholds

    if not data.multi_label:
        return None
    probabilities = predict_arrays(model, x_val, batch_size * 2)
    return fit_thresholds(data.val.targets, probabilities)


def run_trial(config: TrialConfig, data: DatasetArrays | str | Path, *, report: Report | None = None,
              out_dir: str | Path | None = None, emissions_dir: str | None = None,
              resume: str | Path | None = None, cache: CacheAccess | None = None) -> TrialResult:
    """Train and evaluate one configuration; `data` is a loaded dataset or a DATASET DIR path. `resume` is a
    folder written by `TrainingState.save` for this configuration: training continues after its epoch. `cache`
    is where a frozen-backbone head phase finds its features (default: computed once, in memory)."""
    from exifray.emissions import TrialEmissions
    from exifray.feature_cache import HeadFeatures
    from exifray.models.assembly import backbone_identity
    from exifray.models.fusion import build_model, resolve_weights
    from exifray.models.registry import get_backbone_spec

    entered = time.time()
    data = _trial_data(config, data)
    image_size = data.card.resolve_image_size(config.image_size) if config.uses_image else None
    if config.uses_image:
        resolve_weights(config.weights, get_backbone_spec(config.backbone))
    encoder = data.encoder.subset(config.exif_tags)
    configure_tensorflow(config.threads)
    inputs = {name: model_inputs(getattr(data, name), config, encoder) for name in schema.SPLITS}
    built = build_model(config, len(data.classes), encoder.width, data.multi_label, image_size)
    head = HeadFeatures(cache, config, built, inputs, image_size, data.card.dataset_id)
    phases = plan_phases(config, two_phase=built.pretrained)
    if config.fine_tune_layers > 0 and phases[0].name == "train" and config.uses_image:
        logger.info("weights are 'none': the backbone trains from scratch in one phase; fine_tune_layers=%d "
                    "has no effect", config.fine_tune_layers)
    with TrialEmissions(config.country, output_dir=emissions_dir) as emissions:
        loop = TrainingState(data.val.targets, data.multi_label, emissions, report, config.early_stopping_patience,
                             config.batch_size)
        fine_tuned = _train_phases(loop, built, phases, config, inputs, data.train.targets, head, resume)
        train_time = loop.train_time_s
        loop.restore_best()
        emissions.start_segment("test")
        on_features = head.use and phases[-1].unfreeze == 0  # the head trained last: every split's features cached
        scoring = built.head_model(head.width) if on_features else built.model
        split_inputs = head.inputs if on_features else inputs.__getitem__
        scoring_started = time.perf_counter()
        test = _test_scores(scoring, data, split_inputs("test"), config.batch_size)
        scored_ms = (time.perf_counter() - scoring_started) * 1000 / max(1, len(data.test))
        thresholds = _calibrated_thresholds(scoring, data, split_inputs("val"), config.batch_size)
        # A head trained last on cached features leaves the backbone unbuilt: the trial saves the head and the
        # backbone's identity, and its latency is the backbone's (measured once per worker) plus the head's.
        head_only = on_features and not built.assembled
        final = scoring if head_only else built.model
        latency, params = _final_cost(built, final, head_only, scored_ms, inputs, split_inputs, data, config)
        totals = emissions.close()
        emissions_files = emissions.final_files
    metrics = _final_metrics(loop, test, latency, params, train_time, totals, data) | head.metrics() | {
        schema.FINE_TUNED_LAYERS: fine_tuned, "emissions_tracking_mode": emissions.tracking_mode,
        schema.POWER_SOURCE: emissions.power_source, schema.DATA_SOURCE: _data_source(data),
        "country": config.country, schema.STARTUP_S: (loop.first_epoch_at or time.time()) - entered,
        "first_epoch_at": loop.first_epoch_at or math.nan, schema.INFERENCE_ESTIMATED: head_only}
    settings = {**config.to_dict(), "image_size": image_size, "classes": list(data.classes),
                "label_mode": data.card.label_mode, "label_level": data.card.label_level,
                "exif_encoder": encoder.to_dict(), "preprocessing": built.spec.preprocessing if built.spec else None,
                "decode": data.card.decode_params().to_dict(), "thresholds": thresholds}
    result = TrialResult(metrics, loop.history, final, settings, emissions_files,
                         backbone_identity(built) if head_only else None)
    if out_dir is not None:
        save_trial(result, out_dir)
    return result


def _final_cost(built: BuiltModel, final: keras.Model, head_only: bool, scored_ms: float,
                inputs: dict[str, dict[str, np.ndarray]], split_inputs: Any, data: DatasetArrays,
                config: TrialConfig) -> tuple[float, int]:
    """(ms per photo, parameters) of the trial's model; a head-only trial's are its frozen backbone's (measured
    once per worker) plus its head's (its own timed scoring pass when there is a test split)."""
    timed = "test" if len(data.test) else "val"
    if head_only and len(data.test):
        latency = scored_ms
    else:
        latency = inference_ms(final, split_inputs(timed) if head_only else inputs[timed], config.batch_size)
    params = int(final.count_params())
    if head_only:
        backbone_ms, backbone_params = frozen_backbone_cost(built, inputs[timed]["image"], config.batch_size)
        latency, params = latency + backbone_ms, params + backbone_params
    return latency, params


def _data_source(data: DatasetArrays) -> str:
    from exifray.data.stream import ShardImages

    images = data.train.images
    if isinstance(images, ShardImages):
        return f"streamed from {len(images.shards)} shards, buffers of {images.buffer_shards}"
    return "memory" if images is not None else "no pixels"


def _final_metrics(loop: TrainingState, test: dict[str, float], latency: float, params: int, train_time: float,
                   totals: EmissionsTotals, data: DatasetArrays) -> dict[str, Any]:
    """What only a trial's final result carries, with the kept epoch's validation metrics."""
    assert loop.best_row is not None  # at least one epoch ran
    best = loop.best_row
    return {**{key: best[key] for key in (schema.VAL_LOSS, schema.VAL_F1_MACRO, schema.VAL_F1_MICRO,
                                          schema.VAL_ACCURACY)},
            schema.TEST_F1_MACRO: test["f1_macro"], schema.TEST_F1_MICRO: test["f1_micro"],
            schema.TEST_ACCURACY: test["accuracy"], schema.TRAIN_TIME_S: train_time,
            schema.PARAMS: params, schema.INFERENCE_MS: latency,
            schema.EMISSIONS_KG: totals.emissions_kg, schema.ENERGY_KWH: totals.energy_kwh,
            schema.EPOCH_TIME_S: float(np.mean([row[schema.EPOCH_TIME_S] for row in loop.history])),
            schema.EPOCHS: loop.epoch, schema.BEST_EPOCH: best[schema.EPOCH],
            schema.RESUMED_FROM_EPOCH: loop.resumed_from_epoch, "cpu_energy_kwh": totals.cpu_energy_kwh,
            "gpu_energy_kwh": totals.gpu_energy_kwh, "ram_energy_kwh": totals.ram_energy_kwh,
            "train_photos": len(data.train), "val_photos": len(data.val), "test_photos": len(data.test),
            schema.FINAL_RESULT: True}
