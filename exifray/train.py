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

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from exifray import schema
from exifray.batches import Batch as Batch
from exifray.batches import array_batches as array_batches
from exifray.batches import dataset_batches
from exifray.batches import model_inputs as model_inputs
from exifray.batches import predict_arrays as predict_arrays
from exifray.config import TrialConfig
from exifray.data.dataset import DatasetArrays, load_arrays, read_card
from exifray.errors import ConfigError
from exifray.errors import TrialFailed as TrialFailed
from exifray.experiment import save_trial
from exifray.metrics import f1_scores
from exifray.models.runtime import configure_tensorflow, frozen_backbone_cost, inference_ms, without_graph_rewrites
from exifray.training_state import Report as Report
from exifray.training_state import TrainingState as TrainingState
from exifray.training_state import saved_state as saved_state
from exifray.trial_result import TrialResult as TrialResult

if TYPE_CHECKING:
    import keras

    from exifray.emissions import EmissionsTotals
    from exifray.exif.encode import ExifEncoder
    from exifray.feature_cache import CacheAccess, HeadFeatures
    from exifray.models.fusion import BuiltModel
    from exifray.tune_cache import TuneActivations

logger = logging.getLogger(__name__)



def _compile(model: keras.Model, learning_rate: float, multi_label: bool, jit_compile: bool = False,
             steps_per_execution: int = 1) -> None:
    from exifray.models.optimizer import adam

    model.compile(optimizer=adam(learning_rate), jit_compile=jit_compile,
                  loss="binary_crossentropy" if multi_label else "categorical_crossentropy",
                  steps_per_execution=steps_per_execution)
    # Its slot variables made now, eagerly: left to the first step, they are made inside the traced train function,
    # which took a head model's first epoch 0.9-1.0 s instead of 0.6-0.7 s here (the values are the same zeros).
    model.optimizer.build(model.trainable_variables)


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
        if config.fine_tune_layers > 0 and config.uses_image:
            logger.info("weights are 'none': the backbone trains from scratch in one phase; fine_tune_layers=%d "
                        "has no effect", config.fine_tune_layers)
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


def _saved_phase_index(resume: str | Path | None, phases: list[Phase]) -> tuple[dict[str, object] | None, int]:
    """The saved state to resume from and the index of its phase (0 when starting afresh)."""
    if resume is None:
        return None, 0
    saved = saved_state(resume)
    names = [phase.name for phase in phases]
    if saved["phase"] not in names:
        raise TrialFailed(f"the checkpoint in {resume} is in phase {saved['phase']!r}, which this trial does not have")
    return saved, names.index(saved["phase"])


def _train_phases(loop: TrainingState, built: BuiltModel, phases: list[Phase], config: TrialConfig,
                  inputs: dict[str, dict[str, np.ndarray]], targets: np.ndarray, cached: tuple[HeadFeatures,
                  TuneActivations], resume: str | Path | None) -> int:
    """Every phase in order; a resumed trial fast-forwards to the saved phase and continues after its epoch. A
    frozen-backbone phase trains the head on cached features when the head's cache allows it, a fine-tuning phase
    the layers above the cut on cached activations when the tuning cache does. Returns how many backbone layers
    were fine-tuned."""
    from exifray.models.finetune import unfreeze_top

    head, tune = cached
    saved, start = _saved_phase_index(resume, phases)
    fine_tuned = 0
    for index, phase in enumerate(phases[start:], start):
        if index > 0:
            loop.restore_best()  # a phase starts from the best weights of the one before
        model, split, cheap_step = _route(phase.unfreeze, built, head, tune, inputs)
        train = split("train")
        loop.use(model, split("val"))
        loop.report_extra = tune.progress(head.progress())  # an ASHA-stopped trial's last report still says it
        if phase.unfreeze:  # (a pretrained backbone is frozen when it is built: the head phase needs nothing)
            fine_tuned = unfreeze_top(built.backbone, phase.unfreeze)
        steps = math.ceil(len(targets) / config.batch_size)
        cheap = cheap_step or not config.uses_image  # a step on cached features or activations, or an MLP's, is small
        _compile(loop.model, phase.learning_rate, loop.multi_label, config.jit_compile,
                 min(steps, 32) if cheap else 1)  # tiny steps: dispatch many at once
        if saved is not None and resume is not None and index == start:
            loop.resume(resume, saved)
        loop.start_phase(phase.name)
        loop.phase_epochs, loop.cheap_epochs, loop.more_phases = phase.epochs, cheap, index < len(phases) - 1
        if loop.phase_done or loop.phase_epoch >= phase.epochs:
            continue  # the saved state had finished this phase
        dense = cheap and not phase.unfreeze  # only dense layers train: their steps take milliseconds
        seed, epoch = config.seed, loop.epoch
        feed = (dataset_batches(train, targets, config.batch_size, seed=seed, start_epoch=epoch,
                                epochs=phase.epochs - loop.phase_epoch) if dense
                else array_batches(train, targets, config.batch_size, shuffle=True, seed=seed, start_epoch=epoch))
        # shuffle=False: the batches are already shuffled, seeded by (seed, epoch). Keras' own shuffle would
        # request them in an order drawn from Python's global `random` (a resumed trial could not replay it) and
        # jump between a streamed epoch's buffers, re-reading shards for most batches
        with without_graph_rewrites(dense):  # on a few dense layers the rewrites cost more than they save
            loop.model.fit(feed, initial_epoch=loop.phase_epoch, epochs=phase.epochs, verbose=0, shuffle=False,
                           steps_per_epoch=steps if dense else None, callbacks=[loop.callback(phase.name)])
    if not (head.use and phases[-1].unfreeze == 0):  # a head trained last on features: the backbone stays unbuilt
        loop.use(built.model, inputs["val"])
    return fine_tuned


def _route(unfreeze: int | None, built: BuiltModel, head: HeadFeatures, tune: TuneActivations,
           inputs: dict[str, dict[str, np.ndarray]]
           ) -> tuple[keras.Model, Callable[[str], dict[str, np.ndarray]], bool]:
    """A phase's model and its inputs per split: the head on cached features (frozen backbone), the layers above the
    cut on cached activations (fine-tuning), or the full model on the photos; and whether it trains on a cache."""
    if unfreeze == 0 and head.use:
        return built.head_model(head.width), head.inputs, True
    if unfreeze is not None and unfreeze > 0 and tune.prepare(unfreeze):
        return tune.model, tune.inputs, True
    return built.model, inputs.__getitem__, False


def _test_scores(model: keras.Model, data: DatasetArrays, x_test: dict[str, np.ndarray], batch_size: int
                 ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The test scores and what they were computed from (`TrialResult.test_predictions`)."""
    if not len(data.test):
        return {"f1_macro": math.nan, "f1_micro": math.nan, "accuracy": math.nan}, {}
    probabilities = predict_arrays(model, x_test, batch_size * 2)
    scored = {"photo_ids": np.asarray(data.test.photo_ids).astype(str), "targets": data.test.targets.astype(np.int8),
              "probabilities": probabilities.astype(np.float32)}
    return f1_scores(data.test.targets, probabilities, data.multi_label), scored


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
    from exifray.tune_cache import TuneActivations

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
    tune = TuneActivations(cache, config, built, inputs, image_size, data.card.dataset_id)
    phases = plan_phases(config, two_phase=built.pretrained)
    with TrialEmissions(config.country, output_dir=emissions_dir) as emissions:
        loop = TrainingState(data.val.targets, data.multi_label, emissions, report, config.early_stopping_patience,
                             config.batch_size)
        fine_tuned = _train_phases(loop, built, phases, config, inputs, data.train.targets, (head, tune), resume)
        train_time = loop.train_time_s
        loop.restore_best()
        emissions.start_segment("test")
        # the model the last phase trained, on what it trained: every split's cached features or activations
        scoring, split_inputs, _ = _route(phases[-1].unfreeze, built, head, tune, inputs)
        scoring_started = time.perf_counter()
        test, test_predictions = _test_scores(scoring, data, split_inputs("test"), config.batch_size)
        scored_ms = (time.perf_counter() - scoring_started) * 1000 / max(1, len(data.test))
        thresholds = _calibrated_thresholds(scoring, data, split_inputs("val"), config.batch_size)
        # A head trained last on cached features saves the head and the backbone's identity; its latency is the
        # backbone's (timed with its cache entry) plus the head's, whether the trial built the entry or read it. Outside
        # a sweep (no `cache`: features in memory) the trial saves and times its full model: a folder that stands alone.
        # Fine-tuned last on cached activations: the frozen layers' below the cut plus those the phase trained.
        head_only = head.use and phases[-1].unfreeze == 0 and not (cache is None and built.assembled)
        below = tune.below_cost if phases[-1].unfreeze and not head_only else None
        estimated = head_only or below is not None
        latency, params = _final_cost(built, scoring, head_only, below or head.backbone_cost, scored_ms, inputs,
                                      split_inputs, data, config, estimated)
        final = scoring if head_only else built.model
        totals, emissions_files = emissions.close(), emissions.final_files  # (the files are final once closed)
    metrics = _final_metrics(loop, test, latency, params, train_time, totals, data) | tune.metrics(head.metrics()) | {
        schema.FINE_TUNED_LAYERS: fine_tuned, "emissions_tracking_mode": emissions.tracking_mode,
        schema.POWER_SOURCE: emissions.power_source, schema.DATA_SOURCE: _data_source(data),
        "country": config.country, schema.STARTUP_S: (loop.first_epoch_at or time.time()) - entered,
        "first_epoch_at": loop.first_epoch_at or math.nan, schema.INFERENCE_ESTIMATED: estimated,
        schema.BACKBONE_REUSED: built.backbone_reused}
    result = TrialResult(metrics, loop.history, final, _settings(config, image_size, data, encoder, built, thresholds),
                         emissions_files, backbone_identity(built) if head_only else None, test_predictions)
    if out_dir is not None:
        save_trial(result, out_dir)
    return result


def _settings(config: TrialConfig, image_size: int | None, data: DatasetArrays, encoder: ExifEncoder,
              built: BuiltModel, thresholds: list[float] | None) -> dict[str, object]:
    """The trial's `settings.json`: its configuration and everything a bundle needs to prepare a photo."""
    return {**config.to_dict(), "image_size": image_size, "classes": list(data.classes),
            "label_mode": data.card.label_mode, "label_level": data.card.label_level,
            "exif_encoder": encoder.to_dict(), "preprocessing": built.spec.preprocessing if built.spec else None,
            "decode": data.card.decode_params().to_dict(), "thresholds": thresholds}


def _final_cost(built: BuiltModel, scoring: keras.Model, head_only: bool, below: tuple[float, int] | None,
                scored_ms: float, inputs: dict[str, dict[str, np.ndarray]], split_inputs: Any, data: DatasetArrays,
                config: TrialConfig, estimated: bool) -> tuple[float, int]:
    """(ms per photo, parameters) of the trial's model. Measured: the full model timed on the photos. Estimated, for a
    model the trial last trained on cached inputs: the frozen layers' that compute those inputs (`below`: measured
    when the cache entry was built; for a backbone without that measurement, once per worker) plus the scoring
    model's own (its timed scoring pass when there is a test split)."""
    timed = "test" if len(data.test) else "val"
    if not estimated:
        return inference_ms(built.model, inputs[timed], config.batch_size), int(built.model.count_params())
    latency = scored_ms if len(data.test) else inference_ms(scoring, split_inputs(timed), config.batch_size)
    below_ms, below_params = below or frozen_backbone_cost(built, inputs[timed]["image"], config.batch_size)
    # a head-only trial's model is its head; a fine-tuned one's is the full model, whose count is exact
    params = int(scoring.count_params()) + below_params if head_only else int(built.model.count_params())
    return latency + below_ms, params


def _data_source(data: DatasetArrays) -> str:
    from exifray.data.stream import ShardImages

    images = data.train.images
    if isinstance(images, ShardImages):
        return f"streamed from {len(images.shards)} shards, buffers of {images.buffer_shards}"
    return "memory" if images is not None else "no pixels"


def _final_metrics(loop: TrainingState, test: dict[str, float], latency: float, params: int, train_time: float,
                   totals: EmissionsTotals, data: DatasetArrays) -> dict[str, object]:
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
