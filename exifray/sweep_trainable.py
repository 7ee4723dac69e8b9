"""A sweep's trials as Ray Tune runs them: the arrays each trial reads, the trainable that wraps `train.run_trial`
(per-epoch reports, checkpoints, the final report), and the Tune trainable class that restores and reuses workers.

`sweep.py` assembles the Tuner around it and runs the sweep; `sweep_tuner.py` builds the search and scheduler.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from exifray import schema, warm
from exifray.checkpoints import finished_checkpoint, surviving_checkpoint
from exifray.config import TrialConfig
from exifray.data.dataset import DatasetArrays, DatasetCard, load_arrays, read_card
from exifray.data.stream import stream_buffer_shards
from exifray.errors import ConfigError, DataError
from exifray.experiment import CODECARBON_DIR, RESUME_FILE, save_trial, trial_error_marker
from exifray.space import SearchSpace, SweepPlan

if TYPE_CHECKING:
    from ray import tune

    from exifray.feature_cache import CacheAccess
    from exifray.train import TrainingState

logger = logging.getLogger(__name__)


# --- data -------------------------------------------------------------------------------------------------

def sweep_image_sizes(space: SearchSpace, card: DatasetCard, data_dir: str | Path) -> set[int]:
    """The dataset's image sizes the space can ask for; a size the dataset lacks is a ConfigError."""
    available = list(card.image_sizes)
    sizes = {available[0] if size is None else size for size in space.image_sizes()}
    missing = sorted(sizes - set(available))
    if missing:
        raise ConfigError(f"image_size {missing} is not in the dataset {data_dir}; it has sizes {available} "
                          f"(re-run `exifray ingest --sizes`)")
    return sizes


def load_sweep_data(plan: SweepPlan, data_dir: str | Path, object_store_bytes: float = 0.0
                    ) -> dict[int | None, DatasetArrays]:
    """The dataset's arrays at every image size the space can ask for (None: EXIF only), read once; pixels over
    the data budget stay in the shards and trials stream them (`data:` in the space file)."""
    card = read_card(data_dir)
    sizes = sweep_image_sizes(plan.space, card, data_dir)
    if not sizes:
        return {None: load_arrays(data_dir, None)}
    buffer = stream_buffer_shards(plan.config.data, card, sorted(sizes), plan.space.max_concurrent,
                                  object_store_bytes)
    return {size: load_arrays(data_dir, size, stream_buffer_shards=buffer) for size in sorted(sizes)}


def _arrays_for(config: TrialConfig, data: Mapping[int | None, DatasetArrays]) -> DatasetArrays:
    if not config.uses_image:
        return next(iter(data.values()))
    size = next(iter(data.values())).card.resolve_image_size(config.image_size)
    if size not in data:
        raise ConfigError(f"image_size {size} was not loaded for this sweep; loaded {sorted(k for k in data if k)}")
    return data[size]


# --- the trainable ----------------------------------------------------------------------------------------

def _report_epoch(row: dict[str, Any], state: TrainingState, *, every: int = 1,
                  worker: Mapping[str, object] | None = None) -> None:
    """Reports every epoch to Tune, every `every`-th with a checkpoint of the training state (model and
    optimizer, best weights, history, emissions so far), so a trial that loses its node resumes after the last
    checkpointed epoch. A head epoch on cached features is checkpointed only once the epochs since the last
    checkpoint took CHEAP_EPOCHS_S of training, or at the end of a phase another phase follows (the last phase's
    end is followed by the final report and its checkpoint): redoing them costs less than saving each
    (MobileNetV2's head on 1,000 photos: 0.2 s an epoch, 0.04 s a checkpoint). `worker`: the worker's
    fields (`warm.begin_trial`), in every report."""
    from ray import tune

    metrics = ({key: row[key] for key in (*schema.EPOCH_METRICS, schema.EPOCH, schema.PHASE)} | state.report_extra
               | dict(worker or {}))
    state.unsaved_s += float(row[schema.EPOCH_TIME_S])
    if not checkpoint_due(int(row[schema.EPOCH]), every, cheap=state.cheap_epochs, unsaved_s=state.unsaved_s,
                          phase_ending=state.phase_ending and state.more_phases):
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="ckpt-", dir=_scratch()) as folder:
        state.save(folder)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    state.unsaved_s = 0.0


CHEAP_EPOCHS_S: Final = 2.0  # cheap epochs are checkpointed once they add up to this much training


def checkpoint_due(epoch: int, every: int, *, cheap: bool, unsaved_s: float, phase_ending: bool) -> bool:
    """Whether the report after `epoch` carries a checkpoint: every `every`-th epoch; a cheap epoch only once
    `unsaved_s` of training since the last checkpoint reaches CHEAP_EPOCHS_S, or when its phase ends (and another
    follows: the caller's `phase_ending`)."""
    if epoch % every:
        return False
    return not cheap or unsaved_s >= CHEAP_EPOCHS_S or phase_ending


def _final_report(metrics: Mapping[str, object], folder: str | Path) -> None:
    from ray import tune

    final = {key: value for key, value in metrics.items()
             if isinstance(value, int | float) or key in schema.FINAL_TEXT_KEYS}
    final[schema.EPOCH] = metrics[schema.EPOCHS]
    final[schema.FINAL_RESULT] = True
    tune.report(final, checkpoint=tune.Checkpoint.from_directory(folder))


def sweep_trainable(config: dict[str, Any], *, plan: SweepPlan, data: Mapping[int | None, DatasetArrays],
                    cache: CacheAccess | None = None) -> None:
    """One Tune trial: the foundation's `run_trial` with per-epoch reports and a final report with test metrics.

    A trial restarted by FailureConfig (its node or process was lost) continues from its last epoch's
    checkpoint. Deterministic failures (bad settings, divergence) are recorded in the trial folder first, so
    that a retry re-raises them at once instead of training again.
    """
    from ray import tune

    from exifray.train import TrialFailed

    trial_dir = Path(tune.get_context().get_trial_dir())
    trial_dir.mkdir(parents=True, exist_ok=True)  # on a worker node Tune creates the trial's local folder lazily
    worker = warm.begin_trial(plan.config.max_trials_per_worker, plan.config.worker_growth_mb)
    if worker[schema.WORKER_TRIAL] == 1:
        from exifray.models import backbone_pool

        backbone_pool.with_pool(plan.config.reuse_workers)  # a warm worker keeps its pretrained backbones
        if plan.config.reuse_workers:
            warm.freeze_runtime()
    _ensure_machine_tracker(tune.get_context().get_experiment_name(), plan)
    marker = trial_error_marker(trial_dir)
    if marker.exists():
        raise TrialFailed(f"(not retried: deterministic) {marker.read_text(encoding='utf-8')}")
    scratch = _scratch()
    try:
        _run_trial_in(trial_dir, config, plan, data, cache, worker)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for arrays in data.values():  # this trial's shard readers end with it (a warm worker runs on)
            arrays.close()
        warm.trial_ended()


def _scratch() -> Path:
    """This trial's scratch folder, inside Ray's own temp dir on the node (`<ray temp>/exifray-scratch/<trial>`):
    never in TMPDIR itself, and never in the trial folder, which Tune syncs while scratch files come and go."""
    import ray
    from ray import tune

    folder = Path(ray.get_runtime_context().get_temp_dir()) / "exifray-scratch" / tune.get_context().get_trial_id()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run_trial_in(trial_dir: Path, config: dict[str, Any], plan: SweepPlan, data: Mapping[int | None, DatasetArrays],
                  cache: CacheAccess | None, worker: Mapping[str, object]) -> None:
    from ray import tune

    from exifray.train import TrialFailed, run_trial

    marker = trial_error_marker(trial_dir)
    with tempfile.TemporaryDirectory(prefix="resume-", dir=_scratch()) as resume:
        checkpoint = tune.get_checkpoint()
        finished = finished_checkpoint(checkpoint) if checkpoint is not None else None
        if finished is not None:
            finished.to_directory(resume)
            logger.info("trial had finished before the sweep was restored: reporting its saved result")
            saved = json.loads((Path(resume) / schema.METRICS_FILE).read_text(encoding="utf-8"))
            _final_report(saved | dict(worker), resume)
            return
        if checkpoint is not None:
            checkpoint.to_directory(resume)
        try:
            trial_config = plan.space.trial_config(config, threads=plan.config.resources.threads)
            report = functools.partial(_report_epoch, every=plan.config.checkpoint_every, worker=worker)
            result = run_trial(trial_config, _arrays_for(trial_config, data), report=report,
                               resume=resume if (Path(resume) / RESUME_FILE).exists() else None, cache=cache,
                               emissions_dir=str(trial_dir / CODECARBON_DIR))
        except (TrialFailed, ConfigError, DataError, KeyError) as exc:
            marker.write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
            raise
    with tempfile.TemporaryDirectory(prefix="final-", dir=_scratch()) as folder:
        _trial_overhead(result.metrics, result.history)
        result.metrics.update(worker)
        save_trial(result, folder)
        _final_report(result.metrics, folder)


def sweep_country(plan: SweepPlan) -> str:
    return str(plan.space.fixed.get("country", TrialConfig.country))


def _ensure_machine_tracker(sweep: str, plan: SweepPlan) -> None:
    """This node's machine-mode tracker (a node that joined after the sweep started gets one now)."""
    from exifray.machine_emissions import ensure_tracker

    try:
        ensure_tracker(sweep, sweep_country(plan))
    except Exception as exc:  # the trial itself does not depend on it; the sweep's record will lack this node
        logger.warning("could not start the machine tracker on this node: %s", exc)


def _trial_overhead(metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """What the trial cost its worker outside training: from receiving the trial (a fresh worker: its process
    start, with Ray's worker and the imports; a warm one: Tune's reset) to the first epoch, and the share of that
    wall time that no epoch used. Added to the final metrics."""
    born = warm.received_at()
    wall = time.time() - born
    epochs = sum(float(row[schema.EPOCH_TIME_S]) for row in history
                 if row[schema.EPOCH] > metrics[schema.RESUMED_FROM_EPOCH])
    metrics[schema.PROCESS_STARTUP_S] = metrics["first_epoch_at"] - born
    metrics[schema.OUTSIDE_TRAINING_SHARE] = max(0.0, 1.0 - epochs / wall) if wall > 0 else math.nan


TRIAL_PROCESS_TITLE: Final = "ray::SweepTrainable"  # what `ps` shows for a trial's worker process (Ray's title)


def build_trainable(plan: SweepPlan, data: Mapping[int | None, DatasetArrays],
                    cache: CacheAccess | None = None) -> type[tune.Trainable]:
    from ray import tune
    from ray.train._internal.session import get_session
    from ray.tune.trainable.function_trainable import wrap_function

    resources = {"cpu": plan.config.resources.cpus, "gpu": plan.config.resources.gpus}
    function_trainable = wrap_function(tune.with_resources(
        tune.with_parameters(sweep_trainable, plan=plan, data=data, cache=cache), resources))

    class SweepTrainable(function_trainable):  # type: ignore[misc,valid-type]  # a class Tune makes at run time
        """Tune's trainable for `sweep_trainable`, restoring from a later checkpoint when the one Tune's
        experiment state names was deleted before the driver died (`surviving_checkpoint`). A warm worker
        (`reuse_actors`) waits for its previous trial to end and clears what it left (`exifray.warm`)."""

        def setup(self, config: dict[str, Any]) -> None:
            warm.received(reused=False)
            super().setup(config)

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            warm.received(reused=True)
            warm.wait_for_previous_trial()
            if not super().reset_config(new_config):
                logger.error("the previous trial's thread did not end within %s s; Tune fails this trial",
                             os.environ.get(warm.THREAD_TIMEOUT_ENV))
                return False
            # Tune's reset names the trial's working directory as its folder, where a fresh worker's setup names
            # its folder under the storage path: point `get_trial_dir()` where a fresh worker's trial writes
            session = get_session()
            session.trial_info = replace(session.trial_info,
                                         logdir=self._storage.trial_driver_staging_path)
            warm.clear_previous_trial()
            return True

        def restore(self, checkpoint_path: Any) -> None:
            checkpoint = getattr(checkpoint_path, "checkpoint", None)  # Tune passes (checkpoint, metrics)
            found = surviving_checkpoint(checkpoint, checkpoint_path.metrics) if checkpoint is not None else None
            if found is not None:
                checkpoint_path = copy.copy(checkpoint_path)
                checkpoint_path.checkpoint, checkpoint_path.metrics = found
            super().restore(checkpoint_path)

    return SweepTrainable
