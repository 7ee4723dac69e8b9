"""A hyperparameter sweep: Ray Tune runs the trials, Optuna's TPE (or a grid) chooses them.

    exifray sweep --space search_spaces/demo.yaml --data demo-out/dataset --storage-path demo-out/experiments

The EXPERIMENT DIR (`storage_path/name`) holds Tune's own results (so `Tuner.restore` and
`ray.tune.ExperimentAnalysis` read it; TensorBoard events per trial), `sweep.yaml` (the resolved space),
`optuna.journal` (the study, for `optuna-dashboard`) and `leaderboard.csv`, refreshed as trials finish.

Why the journal is a mirror: OptunaSearch restored from a JournalStorage replays the journal and fails
(`UpdateFinishedTrialError`), so the searcher keeps its study in memory (Tune saves and restores it with the
experiment) and `SweepCallback` writes each finished trial into `optuna.journal` for the dashboard.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exifray import schema
from exifray.config import TrialConfig
from exifray.data.dataset import DatasetArrays, load_arrays, read_card
from exifray.errors import ConfigError, DataError, InputNotFoundError
from exifray.leaderboard import (STATUS_COMPLETE, STATUS_ERROR, STATUS_PENDING, STATUS_RUNNING, STATUS_STOPPED,
                                 format_top, rank, trial_row)
from exifray.space import SearchSpace, fit_resources, load_space, parse_space

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.yaml"
JOURNAL_FILE = "optuna.journal"
LEADERBOARD_FILE = "leaderboard.csv"
ERROR_MARKER = "exifray_error.txt"  # a deterministic failure, so a retry re-raises it instead of re-training
DEFAULT_STORAGE = "experiments"


@dataclass(frozen=True)
class SweepResult:
    experiment_dir: str
    leaderboard: Any  # pandas DataFrame, ranked
    wall_time_s: float


# --- data -------------------------------------------------------------------------------------------------

def sweep_image_sizes(space: SearchSpace, data_dir: str | Path) -> set[int]:
    """The dataset's image sizes the space can ask for; a size the dataset lacks is a ConfigError."""
    available = list(read_card(data_dir)["image_sizes"])
    sizes = {available[0] if size is None else size for size in space.image_sizes()}
    missing = sorted(sizes - set(available))
    if missing:
        raise ConfigError(f"image_size {missing} is not in the dataset {data_dir}; it has sizes {available} "
                          f"(re-run `exifray ingest --sizes`)")
    return sizes


def load_sweep_data(space: SearchSpace, data_dir: str | Path) -> dict[int | None, DatasetArrays]:
    """The dataset's arrays at every image size the space can ask for (None: EXIF only), read once."""
    sizes = sweep_image_sizes(space, data_dir)
    if not sizes:
        return {None: load_arrays(data_dir, None)}
    return {size: load_arrays(data_dir, size) for size in sorted(sizes)}


def _arrays_for(config: TrialConfig, data: Mapping[int | None, DatasetArrays]) -> DatasetArrays:
    if not config.uses_image:
        return next(iter(data.values()))
    size = config.image_size if config.image_size is not None else next(iter(data.values())).card["image_sizes"][0]
    if size not in data:
        raise ConfigError(f"image_size {size} was not loaded for this sweep; loaded {sorted(k for k in data if k)}")
    return data[size]


# --- the trainable ----------------------------------------------------------------------------------------

def _report_epoch(row: dict[str, Any], state: Any, *, every: int = 1) -> None:
    """Reports every epoch to Tune, every `every`-th with a checkpoint of the training state (model and
    optimizer, best weights, history, emissions so far), so a trial that loses its node resumes after the last
    checkpointed epoch."""
    from ray import tune

    metrics = {key: row[key] for key in (*schema.EPOCH_METRICS, schema.EPOCH, schema.PHASE)}
    if row[schema.EPOCH] % every:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="exifray-ckpt-") as folder:
        state.save(folder)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def finished_checkpoint(checkpoint: Any) -> Any:
    """The final checkpoint a trial saved after `checkpoint` (the one Tune restores it from), if any.

    When the driver dies after a trial's final report was saved but before Tune's experiment state recorded
    it, the restored sweep runs that trial again from an earlier checkpoint. The final checkpoint is still in
    the trial's folder, and re-reporting it keeps the finished result instead of evaluating (or training)
    again."""
    import pyarrow.fs as pafs

    from ray import tune

    parent, name = checkpoint.path.rstrip("/").rsplit("/", 1)
    listing = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent))
    later = sorted(info.path for info in listing if info.type == pafs.FileType.Directory
                   and info.base_name.startswith("checkpoint_") and info.base_name > name)
    for path in reversed(later):
        if checkpoint.filesystem.get_file_info(f"{path}/{schema.METRICS_FILE}").type == pafs.FileType.File:
            return tune.Checkpoint(path, filesystem=checkpoint.filesystem)
    return None


def _final_report(metrics: Mapping[str, Any], folder: str | Path) -> None:
    from ray import tune

    final = {key: value for key, value in metrics.items() if isinstance(value, int | float)}
    final[schema.EPOCH] = metrics["epochs"]
    tune.report(final, checkpoint=tune.Checkpoint.from_directory(folder))


def sweep_trainable(config: dict[str, Any], *, space: SearchSpace, data: Mapping[int | None, DatasetArrays]) -> None:
    """One Tune trial: the foundation's `run_trial` with per-epoch reports and a final report with test metrics.

    A trial restarted by FailureConfig (its node or process was lost) continues from its last epoch's
    checkpoint. Deterministic failures (bad settings, divergence) are recorded in the trial folder first, so
    that a retry re-raises them at once instead of training again.
    """
    from ray import tune

    from exifray.train import RESUME_FILE, TrialFailed, run_trial, save_trial

    marker = Path(tune.get_context().get_trial_dir()) / ERROR_MARKER
    if marker.exists():
        raise TrialFailed(f"(not retried: deterministic) {marker.read_text(encoding='utf-8')}")
    with tempfile.TemporaryDirectory(prefix="exifray-resume-") as resume:
        checkpoint = tune.get_checkpoint()
        finished = finished_checkpoint(checkpoint) if checkpoint is not None else None
        if finished is not None:
            finished.to_directory(resume)
            logger.info("trial had finished before the sweep was restored: reporting its saved result")
            _final_report(json.loads((Path(resume) / schema.METRICS_FILE).read_text(encoding="utf-8")), resume)
            return
        if checkpoint is not None:
            checkpoint.to_directory(resume)
        try:
            trial_config = space.trial_config(config, threads=space.resources.threads)
            report = functools.partial(_report_epoch, every=space.checkpoint_every)
            result = run_trial(trial_config, _arrays_for(trial_config, data), report=report,
                               resume=resume if (Path(resume) / RESUME_FILE).exists() else None)
        except (TrialFailed, ConfigError, DataError, KeyError) as exc:
            marker.write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
            raise
    with tempfile.TemporaryDirectory(prefix="exifray-final-") as folder:
        save_trial(result, folder)
        _final_report(result.metrics, folder)


# --- experiment files -------------------------------------------------------------------------------------

class ExperimentFiles:
    """Files exifray keeps next to Tune's results, on a local path or any pyarrow filesystem (s3://...)."""

    def __init__(self, storage_path: str, name: str):
        from exifray.fsutil import filesystem_and_path

        self.local = "://" not in storage_path
        self.fs, base = filesystem_and_path(storage_path)
        self.root = f"{base}/{name}"
        self.uri = self.root if self.local else storage_path.rstrip("/") + "/" + name

    def path(self, filename: str) -> str:
        return f"{self.root}/{filename}"

    def check_reachable(self) -> None:
        """Remote storage: the bucket must exist and answer (Tune would fail late, deep in a trial, otherwise)."""
        if self.local:
            return
        import pyarrow.fs as pafs

        bucket = self.root.split("/", 1)[0]
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        where = f" at {endpoint} (AWS_ENDPOINT_URL)" if endpoint else ""
        try:
            info = self.fs.get_file_info(bucket)
        except OSError as exc:
            raise ConfigError(f"cannot reach the storage of {self.uri}{where}: {exc}") from None
        if info.type != pafs.FileType.Directory:
            raise ConfigError(f"the bucket {bucket!r} of --storage-path {self.uri} does not exist{where}; create it "
                              f"first")

    def exists(self, filename: str = "") -> bool:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path(filename) if filename else self.root)
        return info.type != pafs.FileType.NotFound

    def write_bytes(self, filename: str, data: bytes) -> None:
        if self.local:
            from exifray.fsutil import atomic_write_bytes

            atomic_write_bytes(self.path(filename), data)
            return
        self.fs.create_dir(self.root, recursive=True)
        with self.fs.open_output_stream(self.path(filename)) as stream:  # S3: visible only once complete
            stream.write(data)

    def read_text(self, filename: str) -> str:
        with self.fs.open_input_stream(self.path(filename)) as stream:
            return stream.readall().decode("utf-8")


def _space_yaml(space: SearchSpace) -> bytes:
    import yaml

    return yaml.safe_dump(space.to_yaml(), sort_keys=False).encode("utf-8")


# --- callback: leaderboard, journal mirror, progress -------------------------------------------------------

def _status(trial: Any) -> str:
    if trial.status == "ERROR":
        return STATUS_ERROR
    if trial.status == "TERMINATED":
        return STATUS_COMPLETE if schema.TEST_F1_MACRO in (trial.last_result or {}) else STATUS_STOPPED
    return STATUS_RUNNING if trial.status == "RUNNING" else STATUS_PENDING


def _error_summary(trial: Any) -> str | None:
    if trial.status != "ERROR":
        return None
    try:
        error = trial.get_pickled_error()
    except Exception as exc:  # the error file may be unreadable on remote storage; say so rather than hide it
        return f"(error details unreadable: {exc})"
    cause = getattr(error, "cause", None) or error
    if cause is None:
        text = trial.get_error() or "unknown error"
        return str(text).strip().splitlines()[-1]
    message = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {message[-1] if message else ''}"[:500]


class SweepCallback:
    """Keeps `leaderboard.csv` and `optuna.journal` current and shows progress; Tune pickles it with the
    experiment, so it holds no open handles (the journal storage is opened lazily)."""

    def __init__(self, space: SearchSpace, storage_path: str, name: str):
        self.space, self.storage_path, self.name = space, storage_path, name
        self.best_val: dict[str, float] = {}
        self.intermediate: dict[str, dict[int, float]] = {}
        self._journal_ids: set[str] | None = None
        self._bar: Any = None
        self._last_log = 0.0

    # Tune's Callback interface (duck-typed so this module imports without Ray; wrapped in `_tune_callback`)
    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **_: Any) -> None:
        value = result.get(schema.VAL_F1_MACRO)
        if isinstance(value, int | float) and math.isfinite(value):
            self.best_val[trial.trial_id] = max(value, self.best_val.get(trial.trial_id, -math.inf))
        metric = result.get(self.space.metric)
        if isinstance(metric, int | float) and math.isfinite(metric) and schema.TEST_F1_MACRO not in result:
            self.intermediate.setdefault(trial.trial_id, {})[int(result.get("training_iteration", 0))] = float(metric)
        self._progress(trials, force=False)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **_: Any) -> None:
        self._trial_finished(trials, trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **_: Any) -> None:
        self._trial_finished(trials, trial)

    def on_experiment_end(self, trials: list[Any], **_: Any) -> None:
        self.write_leaderboard(trials)
        self.rebuild_journal(trials)
        self._progress(trials, force=True)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _trial_finished(self, trials: list[Any], trial: Any) -> None:
        self.write_leaderboard(trials)
        try:
            self._append_journal(trial)
        except Exception:  # the journal is a view; a failure to mirror must not stop the sweep, but is logged
            logger.exception("could not mirror trial %s into %s", trial.trial_id, JOURNAL_FILE)
        self._progress(trials, force=True)

    # --- leaderboard
    def write_leaderboard(self, trials: list[Any]) -> None:
        frame = leaderboard_frame(self.space, trials, self.best_val)
        ExperimentFiles(self.storage_path, self.name).write_bytes(LEADERBOARD_FILE,
                                                                  frame.to_csv(index=False).encode("utf-8"))

    # --- optuna journal mirror
    def _frozen_trial(self, trial: Any) -> Any:
        import optuna

        distributions = self.space.optuna_distributions()
        config = trial.config or {}
        params = {key: config[key] for key in distributions if key in config}
        result = trial.last_result or {}
        status = _status(trial)
        values = [result.get(metric) for metric in self.space.metrics]
        finite = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        if status == STATUS_COMPLETE and finite:
            state = optuna.trial.TrialState.COMPLETE
        elif status == STATUS_STOPPED:
            state = optuna.trial.TrialState.PRUNED
        else:
            state = optuna.trial.TrialState.FAIL
        intermediate = self.intermediate.get(trial.trial_id, {}) if not self.space.multi_objective else {}
        attrs = {"tune_trial_id": trial.trial_id, "status": status,
                 **{key: result[key] for key in (schema.TEST_F1_MACRO, schema.EMISSIONS_KG, schema.ENERGY_KWH,
                                                 schema.TRAIN_TIME_S) if isinstance(result.get(key), int | float)}}
        error = _error_summary(trial)
        if error:
            attrs["error"] = error
        return optuna.trial.create_trial(
            params=params, distributions={key: distributions[key] for key in params},
            values=values if state == optuna.trial.TrialState.COMPLETE else None, state=state,
            intermediate_values=intermediate, user_attrs=attrs)

    def _study(self, storage: Any) -> Any:
        import optuna

        directions = ["maximize" if mode == "max" else "minimize" for mode in self.space.modes]
        return optuna.create_study(storage=storage, study_name=self.name, directions=directions,
                                   load_if_exists=True)

    def _with_journal(self, action: Any) -> None:
        """Run `action(study)` on the journal: in place on local storage, via a local copy on remote storage."""
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        files = ExperimentFiles(self.storage_path, self.name)
        if files.local:
            Path(files.root).mkdir(parents=True, exist_ok=True)
            action(self._study(JournalStorage(JournalFileBackend(files.path(JOURNAL_FILE)))))
            return
        with tempfile.TemporaryDirectory(prefix="exifray-journal-") as folder:
            local = Path(folder) / JOURNAL_FILE
            if files.exists(JOURNAL_FILE):
                local.write_text(files.read_text(JOURNAL_FILE), encoding="utf-8")
            action(self._study(JournalStorage(JournalFileBackend(str(local)))))
            files.write_bytes(JOURNAL_FILE, local.read_bytes())

    def _append_journal(self, trial: Any) -> None:
        def append(study: Any) -> None:
            known = {t.user_attrs.get("tune_trial_id") for t in study.get_trials(deepcopy=False)}
            if trial.trial_id not in known:
                study.add_trial(self._frozen_trial(trial))

        self._with_journal(append)

    def rebuild_journal(self, trials: list[Any]) -> None:
        """Write the journal afresh from Tune's final state (exactly one Optuna trial per finished Tune trial)."""
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        finished = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
        with tempfile.TemporaryDirectory(prefix="exifray-journal-") as folder:
            local = Path(folder) / JOURNAL_FILE
            study = self._study(JournalStorage(JournalFileBackend(str(local))))
            for trial in sorted(finished, key=lambda t: t.trial_id):
                study.add_trial(self._frozen_trial(trial))
            ExperimentFiles(self.storage_path, self.name).write_bytes(JOURNAL_FILE, local.read_bytes())

    # --- progress
    def _progress(self, trials: list[Any], force: bool) -> None:
        from tqdm import tqdm

        statuses = [_status(t) for t in trials]
        done = sum(s in (STATUS_COMPLETE, STATUS_STOPPED, STATUS_ERROR) for s in statuses)
        best = max(self.best_val.values(), default=math.nan)
        summary = {"running": statuses.count(STATUS_RUNNING), "errored": statuses.count(STATUS_ERROR),
                   "best_val_f1_macro": f"{best:.3f}"}
        if sys.stderr.isatty():
            if self._bar is None:
                self._bar = tqdm(total=self.space.total_trials, desc=f"sweep {self.name}", unit="trial")
            self._bar.n = done
            self._bar.set_postfix(summary, refresh=True)
        elif force or time.monotonic() - self._last_log > 30:
            self._last_log = time.monotonic()
            logger.info("sweep %s: %d/%d trials done (%d running, %d errored), best val_f1_macro %.3f", self.name,
                        done, self.space.total_trials, summary["running"], summary["errored"], best)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_bar"] = None
        return state


def leaderboard_frame(space: SearchSpace, trials: list[Any], best_val: Mapping[str, float]) -> Any:
    """Tune trials as a ranked leaderboard (validation macro F1, best first); `best_val` is each trial's best
    epoch so far, shown for trials that have not finished."""
    rows = []
    for trial in trials:
        settings = space.trial_settings({**space.fixed, **(trial.config or {})})
        checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
        rows.append(trial_row(trial.trial_id, _status(trial), settings, trial.last_result,
                              best_val=best_val.get(trial.trial_id), checkpoint=checkpoint,
                              error=_error_summary(trial)))
    return rank(rows, schema.VAL_F1_MACRO, "max")


def _tune_callback(space: SearchSpace, storage_path: str, name: str) -> Any:
    from ray.tune import Callback

    class _SweepTuneCallback(SweepCallback, Callback):
        pass

    return _SweepTuneCallback(space, storage_path, name)


# --- Tuner assembly ---------------------------------------------------------------------------------------

def _max_epochs(space: SearchSpace, name: str) -> int:
    param = space.param(name)
    if param is not None:
        return int(max(param.values) if param.kind != "randint" else param.values[1] - 1)
    return int(space.fixed.get(name, getattr(TrialConfig, name)))


def build_scheduler(space: SearchSpace) -> Any:
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


def build_search(space: SearchSpace) -> Any:
    import functools
    import warnings

    if space.is_grid:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(points_to_evaluate=space.grid_points(), max_concurrent=space.max_concurrent,
                                     random_state=space.seed)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    # multivariate + group: TPE models the conditional parameters jointly; constant liar: concurrent trials
    # do not all sample the same point while the first ones run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` is marked experimental
        sampler = optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=space.n_startup_trials,
                                             multivariate=True, group=True, constant_liar=True)
    metric: Any = list(space.metrics) if space.multi_objective else space.metric
    mode: Any = list(space.modes) if space.multi_objective else space.mode
    return OptunaSearch(space=functools.partial(_define_by_run, space), metric=metric, mode=mode, sampler=sampler)


def _define_by_run(space: SearchSpace, trial: Any) -> None:
    """Module-level so OptunaSearch (which pickles itself into Tune's experiment state) can pickle it."""
    return space.define_by_run(trial)


def build_trainable(space: SearchSpace, data: Mapping[int | None, DatasetArrays]) -> Any:
    from ray import tune

    resources = {"cpu": space.resources.cpus, "gpu": space.resources.gpus}
    return tune.with_resources(tune.with_parameters(sweep_trainable, space=space, data=data), resources)


def trial_dirname(trial: Any) -> str:
    """`trial_<id>` instead of Tune's default (every parameter in the folder name, cut at 130 characters)."""
    return f"trial_{trial.trial_id}"


def build_tuner(space: SearchSpace, trainable: Any, storage_path: str, name: str) -> Any:
    from ray import tune

    single = not space.multi_objective
    tune_config = tune.TuneConfig(
        search_alg=build_search(space), scheduler=build_scheduler(space), num_samples=space.total_trials,
        max_concurrent_trials=None if space.is_grid else space.max_concurrent, reuse_actors=False,
        trial_dirname_creator=trial_dirname,
        metric=space.metric if single else None, mode=space.mode if single else None)
    run_config = tune.RunConfig(
        name=name, storage_path=storage_path, callbacks=[_tune_callback(space, storage_path, name)],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=space.max_failures), verbose=0)
    return tune.Tuner(trainable, param_space=param_space(space), tune_config=tune_config, run_config=run_config)


def param_space(space: SearchSpace) -> dict[str, Any]:
    """Fixed settings; for a grid also each grid key (its first value), because Tune's BasicVariantGenerator
    only fills points into keys the space has. A point that leaves a key out (an EXIF-only point has no
    backbone) keeps that unused first value, which the trial ignores and the leaderboard leaves blank."""
    values = dict(space.fixed)
    if space.is_grid:
        values.update({p.name: p.values[0] for p in space.params})
    return values


def _storage_uri(storage_path: str | None) -> str:
    path = storage_path or DEFAULT_STORAGE
    return path if "://" in path else str(Path(path).resolve())


def run_sweep(space: SearchSpace, data_dir: str | Path, *, name: str | None = None, storage_path: str | None = None,
              resume: bool = False, address: str | None = None) -> SweepResult:
    """Run (or resume) a sweep and return its ranked leaderboard. Inputs are validated before Ray starts."""
    name = name or space.name
    storage = _storage_uri(storage_path)
    files = ExperimentFiles(storage, name)
    files.check_reachable()
    if resume and not files.exists(SWEEP_FILE):
        raise InputNotFoundError(f"nothing to resume: no sweep at {files.uri}")
    if not resume and files.exists(SWEEP_FILE):
        raise ConfigError(f"experiment {name!r} already exists at {files.uri}; pass --resume to continue it or "
                          f"--name for a new one")
    started = time.perf_counter()
    sweep_image_sizes(space, data_dir)  # a bad dataset fails before Ray starts
    space = _fit_to_cluster(space, in_process=_init_ray(address))
    if resume:
        space = _stored_space(files, space)
    # The arrays go straight into the object store; the driver keeps no copy of its own.
    trainable = build_trainable(space, load_sweep_data(space, data_dir))
    if resume:
        from ray import tune

        logger.info("resuming sweep %s from %s", name, files.uri)
        tuner = tune.Tuner.restore(files.uri, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        files.write_bytes(SWEEP_FILE, _space_yaml(space))
        logger.info("sweep %s: %d trials, at most %d at a time, %g CPU / %g GPU each, results in %s", name,
                    space.total_trials, space.max_concurrent, space.resources.cpus, space.resources.gpus, files.uri)
        tuner = build_tuner(space, trainable, storage, name)
    tuner.fit()
    frame = experiment_leaderboard(space, storage, name)
    files.write_bytes(LEADERBOARD_FILE, frame.to_csv(index=False).encode("utf-8"))
    return SweepResult(files.uri, frame, time.perf_counter() - started)


def experiment_leaderboard(space: SearchSpace, storage_path: str, name: str) -> Any:
    """The ranked leaderboard of an experiment as Tune stored it (finished or still running)."""
    return experiment_trials(space, storage_path, name)[0]


def experiment_trials(space: SearchSpace, storage_path: str, name: str) -> tuple[Any, dict[str, Any]]:
    """(ranked leaderboard, per-trial epoch histories) of an experiment as Tune stored it so far; an empty
    leaderboard when Tune has not saved any state yet."""
    import pandas as pd
    from ray.tune import ExperimentAnalysis

    import pyarrow.fs as pafs

    files = ExperimentFiles(storage_path, name)
    states = files.fs.get_file_info(pafs.FileSelector(files.root)) if files.exists() else []
    if not any(Path(info.path).name.startswith("experiment_state") for info in states):
        return leaderboard_frame(space, [], {}), {}
    # With an explicit filesystem Tune wants the path inside it (bucket/key), not the s3:// URI.
    analysis = ExperimentAnalysis(files.root, storage_filesystem=files.fs)
    best_val, histories = {}, {}
    for trial_id, frame in analysis.trial_dataframes.items():
        if schema.VAL_F1_MACRO in frame:
            values = frame[schema.VAL_F1_MACRO].dropna()
            if len(values):
                best_val[trial_id] = float(values.max())
        epochs = frame[frame[schema.TEST_F1_MACRO].isna()] if schema.TEST_F1_MACRO in frame else frame
        histories[trial_id] = pd.DataFrame(epochs).reset_index(drop=True)
    return leaderboard_frame(space, list(analysis.trials), best_val), histories


def _stored_space(files: ExperimentFiles, given: SearchSpace) -> SearchSpace:
    import yaml

    from ray import tune

    if not files.exists(SWEEP_FILE) or not tune.Tuner.can_restore(files.uri):
        raise InputNotFoundError(f"nothing to resume: no sweep at {files.uri}")
    stored = parse_space(yaml.safe_load(files.read_text(SWEEP_FILE)), default_name=given.name)
    if stored.to_yaml() | {"name": ""} != given.to_yaml() | {"name": ""}:
        raise ConfigError(f"--resume: the search space differs from the one {files.uri} was started with "
                          f"({files.path(SWEEP_FILE)}); resume with the same file and options")
    return stored


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune warns when per-epoch checkpoints force frequent experiment snapshots; with small models that is
    # expected and cheap, and the warning would repeat all sweep long.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A grid's param_space holds each key's first value as a placeholder (see `param_space`); Tune warns for
    # every other grid point that its value differs from that placeholder, which is the point of the grid.
    logging.getLogger("ray.tune.search.variant_generator").setLevel(logging.ERROR)


def _init_ray(address: str | None) -> bool:
    """Join the cluster in `address`/RAY_ADDRESS or start Ray in-process; True when this process runs it."""
    import ray

    _quiet_libraries()
    if not ray.is_initialized():
        if address is None and os.environ.get("RAY_ADDRESS") is None:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address or os.environ["RAY_ADDRESS"], log_to_driver=False)
    return address is None and os.environ.get("RAY_ADDRESS") is None


def _fit_to_cluster(space: SearchSpace, in_process: bool) -> SearchSpace:
    import ray

    cluster = ray.cluster_resources()
    fitted = fit_resources(space, cluster, can_grow=not in_process)
    wanted = fitted.resources
    if wanted.cpus > cluster.get("CPU", 0) or wanted.gpus > cluster.get("GPU", 0):
        logger.warning("each trial asks for %g CPUs / %g GPUs; the cluster has %g / %g now: trials wait until the "
                       "autoscaler adds nodes", wanted.cpus, wanted.gpus, cluster.get("CPU", 0), cluster.get("GPU", 0))
    return fitted


def describe(result: SweepResult, space: SearchSpace, top: int = 10) -> str:
    """The end-of-sweep summary: the top of the leaderboard, the best trial per modality, where things are."""
    frame = result.leaderboard
    lines = [f"sweep finished in {result.wall_time_s:.0f} s: {len(frame)} trials "
             f"({(frame['status'] == STATUS_COMPLETE).sum()} complete, {(frame['status'] == STATUS_STOPPED).sum()} "
             f"stopped early, {(frame['status'] == STATUS_ERROR).sum()} errored)", "", format_top(frame, top), ""]
    for modality in sorted(set(frame["modality"].dropna())):
        group = frame[(frame["modality"] == modality) & frame["status"].isin([STATUS_COMPLETE, STATUS_STOPPED])]
        if group.empty:
            lines.append(f"best {modality}: no finished trial")
            continue
        best = group.iloc[0]  # ranked: complete trials first, then stopped ones
        if best["status"] == STATUS_COMPLETE:
            lines.append(f"best {modality}: val_f1_macro {best[schema.VAL_F1_MACRO]:.3f}, test_f1_macro "
                         f"{best[schema.TEST_F1_MACRO]:.3f}, {best[schema.EMISSIONS_KG]:.2e} kg CO2-eq "
                         f"(trial {best['trial_id']})")
        else:
            lines.append(f"best {modality}: every trial was stopped early by the scheduler; best val_f1_macro "
                         f"{best[schema.VAL_F1_MACRO]:.3f} (trial {best['trial_id']}, no test metrics)")
    lines += ["", f"experiment:   {result.experiment_dir}",
              f"leaderboard:  {result.experiment_dir}/{LEADERBOARD_FILE}",
              f"TensorBoard:  tensorboard --logdir {result.experiment_dir}",
              f"Optuna:       optuna-dashboard {result.experiment_dir}/{JOURNAL_FILE}"
              if "://" not in result.experiment_dir else f"Optuna:       {result.experiment_dir}/{JOURNAL_FILE}"]
    if space.multi_objective:
        lines.append("objectives:   " + ", ".join(f"{m} ({d})" for m, d in zip(space.metrics, space.modes)))
    return "\n".join(lines)


__all__ = ["SweepResult", "load_space", "run_sweep", "describe", "load_sweep_data", "sweep_trainable"]
