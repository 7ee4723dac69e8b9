"""A hyperparameter sweep: Ray Tune runs the trials, Optuna's TPE (or a grid) chooses them.

    exifray sweep --space search_spaces/demo.yaml --data demo-out/dataset --storage-path demo-out/experiments

This module runs a sweep (new or resumed) and sums it up. The trainable and the arrays its trials read are in
`sweep_trainable.py`, the search, the scheduler and the Tuner in `sweep_tuner.py`, the callback that keeps
`leaderboard.csv` and `optuna.journal` current in `sweep_callback.py`; the EXPERIMENT DIR it writes is described
in `experiment.py`. The names those modules define that sweeps saved before the split pickled from here
(`_define_by_run`, `trial_dirname`) and those users import from here stay importable from `exifray.sweep`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from exifray import schema, warm
from exifray.config import SweepConfig
from exifray.data.dataset import read_card
from exifray.errors import ConfigError, InputNotFoundError
from exifray.experiment import (
    JOURNAL_FILE,
    LEADERBOARD_FILE,
    SWEEP_FILE,
    ExperimentFiles,
    experiment_trials,
    space_yaml,
    storage_uri,
)
from exifray.fsutil import is_uri
from exifray.leaderboard import format_top, grams
from exifray.ray_start import start_ray
from exifray.space import SearchSpace, SweepPlan
from exifray.space_file import parse_sweep
from exifray.sweep_trainable import (
    CHEAP_EPOCHS_S,
    TRIAL_PROCESS_TITLE,
    build_trainable,
    checkpoint_due,
    load_sweep_data,
    sweep_country,
    sweep_image_sizes,
    sweep_trainable,
)
from exifray.sweep_tuner import (
    _define_by_run,
    build_sampler,
    build_scheduler,
    build_search,
    build_tuner,
    feature_cache_access,
    param_space,
    trial_dirname,
)

if TYPE_CHECKING:
    import pandas as pd
    from ray import tune

    from exifray.feature_cache import CacheAccess
    from exifray.tracking import Tracking


logger = logging.getLogger(__name__)

__all__ = [  # public here, and what Tune's and Optuna's pickles of sweeps saved before the split name
    "CHEAP_EPOCHS_S", "TRIAL_PROCESS_TITLE", "SweepResult", "_define_by_run", "build_sampler", "build_scheduler",
    "build_search", "build_trainable", "build_tuner", "checkpoint_due", "describe", "feature_cache_access",
    "init_ray", "load_sweep_data", "param_space", "run_sweep", "sweep_country", "sweep_image_sizes",
    "sweep_trainable", "trial_dirname",
]


@dataclass(frozen=True)
class SweepResult:
    experiment_dir: str
    leaderboard: pd.DataFrame  # ranked
    wall_time_s: float
    dashboard_url: str | None = None
    tracking_s: float = 0.0  # the driver's own time spent on MLflow tracking (queueing, and waiting at the end)


# --- running it -------------------------------------------------------------------------------------------

def run_sweep(plan: SweepPlan, data_dir: str | Path, *, name: str | None = None, storage_path: str | None = None,
              resume: bool = False, address: str | None = None, dashboard: bool = False,
              callbacks: Sequence[tune.Callback] = (), tracking: Tracking | None = None) -> SweepResult:
    """Run (or resume) a sweep and return its ranked leaderboard. Inputs are validated before Ray starts.
    `callbacks`: Tune callbacks to add to a new sweep (a resumed one keeps those it started with: Tune restores
    them from its saved state). `tracking`: MLflow / W&B, new or resumed alike (never saved with the sweep)."""
    tracking = tracking.checked() if tracking else None  # a missing extra fails before Ray starts
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
    access = feature_cache_access(storage, plan.space)
    trainable = build_trainable(plan, data, access)
    trackers = tracking.callbacks(files, plan) if tracking else []
    if resume:
        from ray import tune

        logger.info("resuming sweep %s from %s", name, files.uri)
        tuner = tune.Tuner.restore(files.uri, trainable=trainable, resume_unfinished=True, resume_errored=False)
        _relocate_callbacks(tuner, storage, trackers)
    else:
        files.write_bytes(SWEEP_FILE, space_yaml(plan))
        resources = plan.config.resources
        logger.info("sweep %s: %d trials, at most %d at a time, %g CPU / %g GPU each, results in %s", name,
                    plan.space.total_trials, plan.space.max_concurrent, resources.cpus, resources.gpus, files.uri)
        tuner = build_tuner(plan, trainable, storage, name, echo_epochs=not in_process,
                            callbacks=[*trackers, *callbacks])
    frame, tracking_s = _fit(tuner, plan, files, trackers, access)
    return SweepResult(files.uri, frame, time.perf_counter() - started, dashboard_url, tracking_s)


def _fit(tuner: tune.Tuner, plan: SweepPlan, files: ExperimentFiles, trackers: Sequence[tune.Callback],
         access: CacheAccess) -> tuple[pd.DataFrame, float]:
    """Run the Tuner with the per-node emissions trackers and the heartbeat; write the final leaderboard and hand
    it to the MLflow trackers. Returns the leaderboard and the driver's time spent on MLflow."""
    import ray

    from exifray import machine_emissions
    from exifray.sweep_status import Heartbeat
    from exifray.tracking import MlflowTracking

    machine_emissions.start_trackers(files.name, sweep_country(plan))
    mlflow = [tracker for tracker in trackers if isinstance(tracker, MlflowTracking)]
    try:
        with warm.retiring_workers(), Heartbeat(files):  # `leaderboard --watch` reads it
            tuner.fit()
    except BaseException:
        for tracker in mlflow:
            tracker.finish(files, status="FAILED")
        raise
    finally:
        nodes = machine_emissions.stop_trackers(files.name)
        if access.coordination is not None:
            ray.kill(access.coordination)  # the features it held in the object store go with it
    frame = experiment_trials(plan.space, files.storage_path, files.name)[0]
    files.write_bytes(LEADERBOARD_FILE, frame.to_csv(index=False).encode("utf-8"))
    for tracker in mlflow:  # the parent run gets the final leaderboard and report
        tracker.finish(files)
    trials_kg = float(sum(frame[column].fillna(0).sum() for column in (schema.EMISSIONS_KG, schema.FEATURE_BUILD_KG)))
    logger.info("%s", machine_emissions.describe(machine_emissions.record(files, nodes, trials_kg)))
    return frame, sum(tracker.driver_s for tracker in mlflow)


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


def _relocate_callbacks(tuner: tune.Tuner, storage: str, trackers: Sequence[tune.Callback] = ()) -> None:
    """A restored sweep's trackers are the ones given now (Tune restored inert placeholders: tracking settings are
    never saved), and its own callback writes where the experiment is now. Tune pickles callbacks with the
    experiment and points its restored run config at the folder it was restored from, but the callback still
    holds the storage path it started with: an experiment copied elsewhere (another disk, another machine,
    to or from S3) would mirror its leaderboard and journal into the old location. Tune offers no public way
    to reach the restored callbacks: its own internal tuner holds them."""
    from exifray.sweep_callback import SweepCallback
    from exifray.tracking import is_tracker

    internal = getattr(tuner, "_local_tuner", None)
    if internal is None:
        logger.warning("cannot reach the restored sweep's callbacks (Ray client mode?): leaderboard.csv and "
                       "optuna.journal are written where the sweep started, and it is not tracked")
        return
    run_config = internal.get_run_config()
    kept = [callback for callback in run_config.callbacks or [] if not is_tracker(callback)]
    for callback in kept:
        if isinstance(callback, SweepCallback):
            callback.storage_path = storage
    run_config.callbacks = [*kept[:1], *trackers, *kept[1:]]  # exifray's own first, as a new sweep has them


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune warns when per-epoch checkpoints force frequent experiment snapshots; with small models that is
    # expected and cheap, and the warning would repeat all sweep long.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's own console output, even at verbose=0, prints a configuration table and a TensorBoard hint naming
    # the driver's staging folder, not the experiment: exifray prints its own summary with the right logdir.
    # The legacy output engine at verbose=0 prints neither (a user's RAY_AIR_NEW_OUTPUT wins).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
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
            context = start_ray(include_dashboard=dashboard, log_to_driver=False, logging_level=logging.WARNING)
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
                         f"{best[schema.TEST_F1_MACRO]:.3f}, {grams(best[schema.EMISSIONS_KG])} g CO2-eq "
                         f"(trial {best['trial_id']})")
        else:
            lines.append(f"best {modality}: every trial was stopped early by the scheduler; best val_f1_macro "
                         f"{best[schema.VAL_F1_MACRO]:.3f} (trial {best['trial_id']}, no test metrics)")
    builds = frame[schema.FEATURE_BUILD_KG].notna()
    if builds.any():
        lines.append(f"feature cache: entries built by {int(builds.sum())} trials "
                     f"({frame[schema.FEATURE_BUILD_S].sum():.0f} s, {grams(frame[schema.FEATURE_BUILD_KG].sum())} g "
                     f"CO2-eq), {int((frame[schema.FEATURE_CACHE] == 'hit').sum())} trials read pooled features")
    total = frame[schema.EMISSIONS_KG].sum() + frame[schema.FEATURE_BUILD_KG].sum()
    lines.append(f"emissions:    {grams(total)} g CO2-eq in all (trials + each feature-cache build once)")
    lines += ["", f"experiment:   {result.experiment_dir}",
              f"leaderboard:  {result.experiment_dir}/{LEADERBOARD_FILE}",
              f"TensorBoard:  tensorboard --logdir {result.experiment_dir}   (pip install 'exifray[viz]')",
              f"Optuna:       optuna-dashboard {result.experiment_dir}/{JOURNAL_FILE}   (pip install 'exifray[viz]'; "
              f"study {result.experiment_dir.rstrip('/').rsplit('/', 1)[-1]})"
              if not is_uri(result.experiment_dir) else f"Optuna:       {result.experiment_dir}/{JOURNAL_FILE}"]
    if result.dashboard_url:
        lines.append(f"Ray:          {result.dashboard_url} was this sweep's Ray dashboard; it closes when this "
                     f"process ends (keep one up with `ray start --head` and `--address`)")
    if space.multi_objective:
        objectives = zip(space.metrics, space.modes, strict=True)
        lines.append("objectives:   " + ", ".join(f"{metric} ({mode})" for metric, mode in objectives))
    return "\n".join(lines)
