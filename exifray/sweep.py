"""A hyperparameter sweep: Ray Tune runs the trials, Optuna's TPE (or a grid) chooses them.

    exifray sweep --space search_spaces/demo.yaml --data demo-out/dataset --storage-path demo-out/experiments

This module holds the search (OptunaSearch or a grid), the scheduler, the trainable and the Tuner; the
EXPERIMENT DIR it writes is described in `experiment.py`, the callback that keeps `leaderboard.csv` and
`optuna.journal` current in `sweep_callback.py`.
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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from exifray import schema, warm
from exifray.checkpoints import finished_checkpoint, surviving_checkpoint
from exifray.config import SweepConfig, TrialConfig
from exifray.data.dataset import DatasetArrays, DatasetCard, load_arrays, read_card
from exifray.data.stream import stream_buffer_shards
from exifray.errors import ConfigError, DataError, InputNotFoundError
from exifray.experiment import (
    CODECARBON_DIR,
    JOURNAL_FILE,
    LEADERBOARD_FILE,
    RESUME_FILE,
    SWEEP_FILE,
    ExperimentFiles,
    experiment_trials,
    save_trial,
    space_yaml,
    storage_uri,
    trial_error_marker,
)
from exifray.fsutil import is_uri
from exifray.leaderboard import format_top
from exifray.space import SearchSpace, SweepPlan
from exifray.space_file import parse_sweep

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from ray import tune
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from exifray.feature_cache import CacheAccess
    from exifray.train import TrainingState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    experiment_dir: str
    leaderboard: pd.DataFrame  # ranked
    wall_time_s: float
    dashboard_url: str | None = None


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
    checkpoint took CHEAP_EPOCHS_S of training, or at the end of its phase: redoing them costs less than saving
    each (MobileNetV2's head on 1,000 photos: 0.2 s an epoch, 0.04 s a checkpoint). `worker`: the worker's
    fields (`warm.begin_trial`), in every report."""
    from ray import tune

    metrics = ({key: row[key] for key in (*schema.EPOCH_METRICS, schema.EPOCH, schema.PHASE)} | state.report_extra
               | dict(worker or {}))
    state.unsaved_s += float(row[schema.EPOCH_TIME_S])
    if not checkpoint_due(int(row[schema.EPOCH]), every, cheap=state.cheap_epochs, unsaved_s=state.unsaved_s,
                          phase_ending=state.phase_ending):
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="ckpt-", dir=_scratch()) as folder:
        state.save(folder)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    state.unsaved_s = 0.0


CHEAP_EPOCHS_S: Final = 2.0  # cheap epochs are checkpointed once they add up to this much training


def checkpoint_due(epoch: int, every: int, *, cheap: bool, unsaved_s: float, phase_ending: bool) -> bool:
    """Whether the report after `epoch` carries a checkpoint: every `every`-th epoch; a cheap epoch only once
    `unsaved_s` of training since the last checkpoint reaches CHEAP_EPOCHS_S, or when its phase ends."""
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


# --- Tuner assembly ---------------------------------------------------------------------------------------

def _max_epochs(space: SearchSpace, name: str) -> int:
    param = space.param(name)
    if param is not None:
        return int(max(param.values) if param.kind != "randint" else param.values[1] - 1)
    return int(space.fixed.get(name, getattr(TrialConfig, name)))


def build_scheduler(space: SearchSpace) -> TrialScheduler | None:
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    scheduler = space.scheduler
    if scheduler.type == "none":
        return None
    if scheduler.type == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=scheduler.grace_period,
                                  min_samples_required=scheduler.min_samples_required)
    # Every epoch of both phases is one report, plus the final report with the test metrics.
    max_t = scheduler.max_t or _max_epochs(space, "epochs") + _max_epochs(space, "fine_tune_epochs") + 1
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=scheduler.grace_period,
                         reduction_factor=scheduler.reduction_factor)


def build_search(space: SearchSpace) -> Searcher:
    if space.is_grid:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # a SearchAlgorithm rather than a Searcher; TuneConfig(search_alg=...) takes both
        return BasicVariantGenerator(points_to_evaluate=space.grid_points(), max_concurrent=space.max_concurrent,
                                     random_state=space.seed)
    from ray.tune.search.optuna import OptunaSearch

    metric: str | list[str] = list(space.metrics) if space.multi_objective else space.metric
    mode: str | list[str] = list(space.modes) if space.multi_objective else space.mode
    return OptunaSearch(space=functools.partial(_define_by_run, space), metric=metric, mode=mode,
                        sampler=build_sampler(space))


def build_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `search` names, seeded by the space's seed."""
    import optuna

    if space.search == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    if space.search == "independent_tpe":
        return optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=space.n_startup_trials)
    # multivariate + group: TPE models the conditional parameters jointly; constant liar: concurrent trials
    # do not all sample the same point while the first ones run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` is marked experimental
        return optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=space.n_startup_trials,
                                          multivariate=True, group=True, constant_liar=True)


def _define_by_run(space: SearchSpace, trial: optuna.Trial) -> None:
    """Module-level so OptunaSearch (which pickles itself into Tune's experiment state) can pickle it."""
    return space.define_by_run(trial)


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


def feature_cache_access(storage: str) -> CacheAccess:
    """The FEATURE CACHE beside the experiments, and a coordinator actor owned by this driver."""
    from exifray.feature_cache import CacheAccess, FeatureCache, coordinator

    return CacheAccess(FeatureCache.under(storage), coordinator())


def trial_dirname(trial: Trial) -> str:
    """`trial_<id>` instead of Tune's default (every parameter in the folder name, cut at 130 characters)."""
    return f"trial_{trial.trial_id}"


def build_tuner(plan: SweepPlan, trainable: type[tune.Trainable], storage_path: str, name: str,
                echo_epochs: bool = False, callbacks: Sequence[tune.Callback] = ()) -> tune.Tuner:
    """`echo_epochs`: a line per trial epoch in the driver's log, for sweeps that join a cluster (`ray job logs`
    shows the driver's output; the trials' own output stays on their nodes, `log_to_driver=False`). `callbacks`:
    Tune callbacks of the caller's, after exifray's own."""
    from ray import tune

    from exifray.sweep_callback import tune_callback

    space = plan.space
    single = not space.multi_objective
    tune_config = tune.TuneConfig(
        search_alg=build_search(space), scheduler=build_scheduler(space), num_samples=space.total_trials,
        max_concurrent_trials=None if space.is_grid else space.max_concurrent,
        reuse_actors=plan.config.reuse_workers,
        trial_dirname_creator=trial_dirname,
        metric=space.metric if single else None, mode=space.mode if single else None)
    run_config = tune.RunConfig(
        name=name, storage_path=storage_path,
        callbacks=[tune_callback(space, storage_path, name, echo_epochs), *callbacks],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=plan.config.max_failures), verbose=0)
    return tune.Tuner(trainable, param_space=param_space(space), tune_config=tune_config, run_config=run_config)


def param_space(space: SearchSpace) -> dict[str, object]:
    """Fixed settings; for a grid also each grid key (its first value), because Tune's BasicVariantGenerator
    only fills points into keys the space has. A point that leaves a key out (an EXIF-only point has no
    backbone) keeps that unused first value, which the trial ignores and the leaderboard leaves blank."""
    values = dict(space.fixed)
    if space.is_grid:
        values.update({p.name: p.values[0] for p in space.params})
    return values


# --- running it -------------------------------------------------------------------------------------------

def run_sweep(plan: SweepPlan, data_dir: str | Path, *, name: str | None = None, storage_path: str | None = None,
              resume: bool = False, address: str | None = None, dashboard: bool = False,
              callbacks: Sequence[tune.Callback] = ()) -> SweepResult:
    """Run (or resume) a sweep and return its ranked leaderboard. Inputs are validated before Ray starts.
    `callbacks`: Tune callbacks to add to a new sweep (a resumed one keeps those it started with: Tune restores
    them from its saved state)."""
    name = name or plan.name
    storage = storage_uri(storage_path)
    files = ExperimentFiles(storage, name)
    files.check_reachable()
    if resume and not files.exists(SWEEP_FILE):
        raise InputNotFoundError(f"nothing to resume: no sweep at {files.uri}")
    if not resume and files.exists(SWEEP_FILE):
        raise ConfigError(f"experiment {name!r} already exists at {files.uri}; pass --resume to continue it or "
                          f"--name for a new one")
    started = time.perf_counter()
    sweep_image_sizes(plan.space, read_card(data_dir), data_dir)  # a bad dataset fails before Ray starts
    in_process, dashboard_url = init_ray(address, dashboard=dashboard)
    plan = replace(plan, config=_fit_to_cluster(plan.config, in_process=in_process))
    if resume:
        plan = _stored_plan(files, plan)
    # The arrays go straight into the object store; the driver keeps no copy of its own.
    import ray

    data = load_sweep_data(plan, data_dir, ray.cluster_resources().get("object_store_memory", 0.0))
    access = feature_cache_access(storage)
    trainable = build_trainable(plan, data, access)
    if resume:
        from ray import tune

        logger.info("resuming sweep %s from %s", name, files.uri)
        tuner = tune.Tuner.restore(files.uri, trainable=trainable, resume_unfinished=True, resume_errored=False)
        _relocate_callbacks(tuner, storage)
    else:
        files.write_bytes(SWEEP_FILE, space_yaml(plan))
        resources = plan.config.resources
        logger.info("sweep %s: %d trials, at most %d at a time, %g CPU / %g GPU each, results in %s", name,
                    plan.space.total_trials, plan.space.max_concurrent, resources.cpus, resources.gpus, files.uri)
        tuner = build_tuner(plan, trainable, storage, name, echo_epochs=not in_process, callbacks=callbacks)
    from exifray import machine_emissions

    machine_emissions.start_trackers(name, sweep_country(plan))
    try:
        with warm.retiring_workers():
            tuner.fit()
    finally:
        nodes = machine_emissions.stop_trackers(name)
        ray.kill(access.coordination)  # the features it held in the object store go with it
    frame = experiment_trials(plan.space, storage, name)[0]
    files.write_bytes(LEADERBOARD_FILE, frame.to_csv(index=False).encode("utf-8"))
    trials_kg = float(sum(frame[column].fillna(0).sum() for column in (schema.EMISSIONS_KG, schema.FEATURE_BUILD_KG)))
    logger.info("%s", machine_emissions.describe(machine_emissions.record(files, nodes, trials_kg)))
    return SweepResult(files.uri, frame, time.perf_counter() - started, dashboard_url)


def _stored_plan(files: ExperimentFiles, given: SweepPlan) -> SweepPlan:
    import yaml
    from ray import tune

    if not files.exists(SWEEP_FILE) or not tune.Tuner.can_restore(files.uri):
        raise InputNotFoundError(f"nothing to resume: no sweep at {files.uri}")
    stored = parse_sweep(yaml.safe_load(files.read_text(SWEEP_FILE)), default_name=given.name)
    workers = {key: stored.to_yaml()[key] for key in _WORKER_KEYS}
    if workers != {key: given.to_yaml()[key] for key in _WORKER_KEYS}:  # Tune's restore keeps reuse_actors
        logger.warning("--resume: the file's worker settings differ from the ones the sweep started with; it keeps "
                       "those (%s)", ", ".join(f"{key}: {value}" for key, value in workers.items()))
    if stored.to_yaml() | {"name": ""} | workers != given.to_yaml() | {"name": ""} | workers:
        raise ConfigError(f"--resume: the search space differs from the one {files.uri} was started with "
                          f"({files.path(SWEEP_FILE)}); resume with the same file and options")
    return replace(stored, config=replace(stored.config, smoke_test=given.config.smoke_test,
                                          resources=given.config.resources))


_WORKER_KEYS: Final = ("warm_workers", "max_trials_per_worker", "worker_growth_mb")


def _relocate_callbacks(tuner: tune.Tuner, storage: str) -> None:
    """A restored sweep's own callback writes where the experiment is now. Tune pickles callbacks with the
    experiment and points its restored run config at the folder it was restored from, but the callback still
    holds the storage path it started with: an experiment copied elsewhere (another disk, another machine,
    to or from S3) would mirror its leaderboard and journal into the old location. Tune offers no public way
    to reach the restored callbacks: its own internal tuner holds them."""
    from exifray.sweep_callback import SweepCallback

    internal = getattr(tuner, "_local_tuner", None)
    if internal is None:
        logger.warning("cannot reach the restored sweep's callbacks (Ray client mode?): leaderboard.csv and "
                       "optuna.journal are written where the sweep started")
        return
    for callback in internal.get_run_config().callbacks or []:
        if isinstance(callback, SweepCallback):
            callback.storage_path = storage


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune warns when per-epoch checkpoints force frequent experiment snapshots; with small models that is
    # expected and cheap, and the warning would repeat all sweep long.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A grid's param_space holds each key's first value as a placeholder (see `param_space`); Tune warns for
    # every other grid point that its value differs from that placeholder, which is the point of the grid.
    logging.getLogger("ray.tune.search.variant_generator").setLevel(logging.ERROR)


def init_ray(address: str | None, dashboard: bool = False) -> tuple[bool, str | None]:
    """Join the cluster in `address`/RAY_ADDRESS or start Ray in-process, with its dashboard when asked.
    Returns (whether this process runs Ray, the dashboard's URL when it started one; also logged)."""
    import ray

    _quiet_libraries()
    in_process = address is None and os.environ.get("RAY_ADDRESS") is None
    url = None
    if not ray.is_initialized():
        if in_process:
            context = ray.init(include_dashboard=dashboard, log_to_driver=False, logging_level=logging.WARNING)
            if dashboard and context.dashboard_url:
                url = f"http://{context.dashboard_url}"
                logger.info("Ray dashboard: %s", url)
        else:
            ray.init(address=address or os.environ["RAY_ADDRESS"], log_to_driver=False)
    return in_process, url


def _fit_to_cluster(config: SweepConfig, in_process: bool) -> SweepConfig:
    import ray

    cluster = ray.cluster_resources()
    fitted = config.fit(cluster, can_grow=not in_process)
    wanted = fitted.resources
    if wanted.cpus > cluster.get("CPU", 0) or wanted.gpus > cluster.get("GPU", 0):
        logger.warning("each trial asks for %g CPUs / %g GPUs; the cluster has %g / %g now: trials wait until the "
                       "autoscaler adds nodes", wanted.cpus, wanted.gpus, cluster.get("CPU", 0), cluster.get("GPU", 0))
    return fitted


def describe(result: SweepResult, space: SearchSpace, top: int = 10) -> str:
    """The end-of-sweep summary: the top of the leaderboard, the best trial per modality, where things are."""
    frame = result.leaderboard
    count = frame["status"].value_counts()
    lines = [f"sweep finished in {result.wall_time_s:.0f} s: {len(frame)} trials "
             f"({count.get(schema.STATUS_COMPLETE, 0)} complete, {count.get(schema.STATUS_STOPPED, 0)} stopped early, "
             f"{count.get(schema.STATUS_ERROR, 0)} errored)", "", format_top(frame, top), ""]
    for modality in sorted(set(frame["modality"].dropna())):
        finished = frame["status"].isin([schema.STATUS_COMPLETE, schema.STATUS_STOPPED])
        group = frame[(frame["modality"] == modality) & finished]
        if group.empty:
            lines.append(f"best {modality}: no finished trial")
            continue
        best = group.iloc[0]  # ranked: complete trials first, then stopped ones
        if best["status"] == schema.STATUS_COMPLETE:
            lines.append(f"best {modality}: val_f1_macro {best[schema.VAL_F1_MACRO]:.3f}, test_f1_macro "
                         f"{best[schema.TEST_F1_MACRO]:.3f}, {best[schema.EMISSIONS_KG]:.2e} kg CO2-eq "
                         f"(trial {best['trial_id']})")
        else:
            lines.append(f"best {modality}: every trial was stopped early by the scheduler; best val_f1_macro "
                         f"{best[schema.VAL_F1_MACRO]:.3f} (trial {best['trial_id']}, no test metrics)")
    builds = frame[schema.FEATURE_BUILD_KG].notna()
    if builds.any():
        lines.append(f"feature cache: {int(builds.sum())} entries built ({frame[schema.FEATURE_BUILD_S].sum():.0f} s, "
                     f"{frame[schema.FEATURE_BUILD_KG].sum():.2e} kg CO2-eq), "
                     f"{int((frame[schema.FEATURE_CACHE] == 'hit').sum())} trials read one")
    total = frame[schema.EMISSIONS_KG].sum() + frame[schema.FEATURE_BUILD_KG].sum()
    lines.append(f"emissions:    {total:.2e} kg CO2-eq in all (trials + each feature-cache build once)")
    lines += ["", f"experiment:   {result.experiment_dir}",
              f"leaderboard:  {result.experiment_dir}/{LEADERBOARD_FILE}",
              f"TensorBoard:  tensorboard --logdir {result.experiment_dir}   (pip install 'exifray[viz]')",
              f"Optuna:       optuna-dashboard {result.experiment_dir}/{JOURNAL_FILE}   (pip install 'exifray[viz]'; "
              f"study {result.experiment_dir.rstrip('/').rsplit('/', 1)[-1]})"
              if not is_uri(result.experiment_dir) else f"Optuna:       {result.experiment_dir}/{JOURNAL_FILE}"]
    if result.dashboard_url:
        lines.append(f"Ray:          {result.dashboard_url} (the Ray dashboard, while this process runs)")
    if space.multi_objective:
        objectives = zip(space.metrics, space.modes, strict=True)
        lines.append("objectives:   " + ", ".join(f"{metric} ({mode})" for metric, mode in objectives))
    return "\n".join(lines)
