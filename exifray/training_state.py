"""Where a trial's training stands after each epoch (`TrainingState`, driven by a Keras callback): validation
metrics per epoch, emissions, the report, the best weights, patience; saved as a resumable folder (`save`,
`saved_state`, `resume`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from exifray import schema
from exifray.batches import predict_arrays
from exifray.errors import TrialFailed
from exifray.experiment_files import BEST_WEIGHTS_FILE, RESUME_FILE
from exifray.fsutil import atomic_write_json, jsonable
from exifray.metrics import crossentropy, f1_scores

if TYPE_CHECKING:
    import keras

    from exifray.emissions import TrialEmissions

logger = logging.getLogger(__name__)

Report = Callable[[dict[str, Any], "TrainingState"], None]  # (epoch metrics, state after the epoch) → None


class TrainingState:
    """Where training stands after each epoch, as a Keras callback drives it: per-epoch validation metrics,
    emissions, the report, the best weights, patience. `save` writes it as a resumable folder."""

    def __init__(self, val_targets: np.ndarray, multi_label: bool, emissions: TrialEmissions, report: Report | None,
                 patience: int, batch_size: int):
        self._model: keras.Model | None = None  # `use` names it
        self.val: tuple[dict[str, np.ndarray], np.ndarray] = ({}, val_targets)
        self.multi_label = multi_label
        self.emissions, self.report, self.patience, self.batch_size = emissions, report, patience, batch_size
        self.history: list[dict[str, object]] = []
        self.best_loss = math.inf
        self.best_weights: list[np.ndarray] | None = None
        self.best_row: dict[str, Any] | None = None
        self.epoch = 0  # epochs done, both phases
        self.phase = ""
        self.phase_epoch = 0  # epochs done in this phase
        self.phase_done = False  # early stopping ended this phase
        self.phase_epochs = 0  # epochs this phase runs at most
        self.cheap_epochs = False  # this phase trains a head on cached features or an EXIF-only MLP: cheap to redo
        self.more_phases = False  # another phase follows this one (the last one's end is the final report)
        self.unsaved_s = 0.0  # training since the last resume checkpoint (`sweep_trainable._report_epoch` keeps it)
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
