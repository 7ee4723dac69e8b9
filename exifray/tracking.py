"""Experiment tracking: a sweep in MLflow (one parent run, a child run per trial) and in Weights & Biases.

    exifray sweep --space ... --data ... --mlflow http://127.0.0.1:5000 --wandb my-project

MLflow: why not Ray's `MLflowLoggerCallback`? It makes flat runs with no parent, uploads the driver's staging
folder (no model, no CodeCarbon files), drops text values (the feature-cache outcome), keeps its trial → run map
in memory only (a resumed sweep makes a second run per trial) and sends each request from Tune's driver loop,
where MLflow's client retries a failed request for minutes. `MlflowTracking` instead:
  - queues every update and sends it from one background thread with `log_batch`, so the driver never waits on
    the server; a server that is down costs one failed request, then updates are dropped for `RETRY_AFTER_S`
    before the next try, each trial's first loss is logged once, and the sweep finishes on time;
  - finds a trial's run by its tags (`exifray.experiment_uri`, `exifray.trial_id`) before making one, so a resumed
    sweep keeps one run per trial, under the sweep's one parent run, and ends those its killed driver had not;
  - logs the trial's settings as params, each epoch's metrics by step, the final metrics, its text outcomes
    (feature cache, power source, data source) as tags, and uploads its final checkpoint from storage (the model,
    CodeCarbon's `emissions.csv`, `metrics.json`) as the run's `final/` artifacts;
  - gives the parent the sweep's settings, `leaderboard.csv` and the HTML report when the sweep ends.
W&B: Ray's `WandbLoggerCallback` fits (one helper process per trial, which W&B wants); `WandbTracking` adds the
text outcomes to each run's config, the final checkpoint as an artifact, `resume="allow"` and the driver's
`WANDB_MODE`/`WANDB_DIR` passed to `wandb.init` (Ray forwards only `WANDB_API_KEY` to the helpers), and helpers
that wait for W&B's service to write the run out.

Neither writes its settings anywhere in the experiment (DESIGN decision 10): Tune pickles callbacks with the
experiment, so both pickle as an inert placeholder, which `sweep.run_sweep` replaces on `--resume`.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ray.tune import Callback

from exifray import schema
from exifray.errors import ConfigError
from exifray.version import __version__

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

    from exifray.experiment_files import ExperimentFiles
    from exifray.space import SweepPlan

logger = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 15.0  # after a failed request, updates are dropped this long before the server is tried again
FLUSH_TIMEOUT_S: Final = 120.0  # how long the end of a sweep waits for queued updates while the server answers
# MLflow's client retries a failed request 7 times with exponential backoff (minutes); exifray's background sender
# wants a quick answer instead. These are defaults only: a user's own settings of these variables win.
MLFLOW_CLIENT_DEFAULTS: Final = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # its "View run" lines
EXPERIMENT_TAG: Final = "exifray.experiment_uri"
TRIAL_TAG: Final = "exifray.trial_id"
PARENT_TAG: Final = "mlflow.parentRunId"
# Tune's bookkeeping in every result: not metrics of the model (the step is `training_iteration`)
_NOT_METRICS: Final = frozenset({"training_iteration", "timestamp", "pid", "done", "time_since_restore",
                                 "iterations_since_restore", schema.FINAL_RESULT, schema.WORKER_RETIRES,
                                 schema.INFERENCE_ESTIMATED})
_SWEEP: Final = "sweep"  # the parent run's updates, in the per-trial loss log


@dataclass(frozen=True)
class Tracking:
    """Where a sweep is tracked. `mlflow`: a tracking URI, or "" for MLflow's own `MLFLOW_TRACKING_URI`;
    `wandb`: a W&B project. Never stored with the experiment: a resume takes them from its caller again."""

    mlflow: str | None = None
    wandb: str | None = None

    def __bool__(self) -> bool:
        return self.mlflow is not None or self.wandb is not None

    def checked(self) -> Tracking:
        """The extras are installed and the MLflow URI is known (before Ray starts); the URI resolved."""
        uri = self.mlflow
        if uri is not None:
            _require("mlflow", "--mlflow")
            uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
            if not uri:
                raise ConfigError("--mlflow without a URI needs MLFLOW_TRACKING_URI set; pass --mlflow URI (e.g. "
                                  "http://127.0.0.1:5000)")
        if self.wandb is not None:
            _require("wandb", "--wandb")
            if not self.wandb.strip():
                raise ConfigError("--wandb needs a project name")
        return Tracking(uri, self.wandb)

    def callbacks(self, files: ExperimentFiles, plan: SweepPlan) -> list[Callback]:
        trackers: list[Callback] = []
        if self.mlflow:
            trackers.append(MlflowTracking(self.mlflow, files.uri, files.name, plan))
        if self.wandb:
            trackers.append(wandb_tracking(self.wandb, files.name))
        return trackers


def _require(module: str, option: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise ConfigError(f"{option} needs the {module} extra: pip install 'exifray[{module}]' ({exc})") from None


def is_tracker(callback: object) -> bool:
    """A tracker, live or as Tune restored it."""
    return isinstance(callback, _PicklesInert | InertTracker)


def result_metrics(result: Mapping[str, object]) -> dict[str, float]:
    """A Tune result's numbers as MLflow metrics: finite, not booleans, not Tune's bookkeeping."""
    return {key: float(value) for key, value in result.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and key not in _NOT_METRICS
            and math.isfinite(value)}


def trial_params(config: Mapping[str, object]) -> dict[str, str]:
    """A trial's settings as MLflow params (text, at most MLflow's 6,000 characters)."""
    return {key: str(value)[:6000] for key, value in sorted(config.items()) if value is not None}


def trial_status(trial: Trial) -> str:
    """How a trial ended, as the leaderboard says it."""
    if trial.status == "ERROR":
        return schema.STATUS_ERROR
    return schema.STATUS_COMPLETE if schema.is_final(trial.last_result) else schema.STATUS_STOPPED


_MLFLOW_STATUS: Final = {schema.STATUS_COMPLETE: "FINISHED", schema.STATUS_STOPPED: "KILLED",
                         schema.STATUS_ERROR: "FAILED"}


class InertTracker(Callback):
    """What a tracker pickles as (Tune saves callbacks with the experiment): a callback that does nothing and holds
    no URI, project or credential. `sweep.run_sweep` replaces it on `--resume` with the trackers it is given."""


class _PicklesInert:
    def __reduce__(self) -> tuple[type[InertTracker], tuple[()]]:
        return InertTracker, ()

    def __deepcopy__(self, memo: dict[int, object]) -> _PicklesInert:  # a live connection is shared, not copied
        return self


# --- MLflow --------------------------------------------------------------------------------------------------

class MlflowTracking(_PicklesInert, Callback):
    """One parent run per sweep and a child run per trial, sent from a background thread (see the module)."""

    def __init__(self, uri: str, experiment_uri: str, name: str, plan: SweepPlan):
        self.uri, self.experiment_uri, self.name = uri, experiment_uri, name
        self.sweep_params = {"name": name, "metric": plan.space.metric, "mode": plan.space.mode,
                             "num_samples": plan.space.total_trials, "max_concurrent": plan.space.max_concurrent,
                             "search": plan.space.search, "scheduler": plan.space.scheduler.type,
                             **{f"fixed.{key}": value for key, value in plan.space.fixed.items()}}
        self._queue: queue.Queue[tuple[str, Callable[[MlflowClient], None]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._client: MlflowClient | None = None
        self._experiment_id = ""
        self._parent = ""
        self._runs: dict[str, str] = {}  # trial id → run id (sender thread only)
        self._retry_at = 0.0
        self._lost: dict[str, int] = {}  # trial id (or "sweep") → updates not sent
        self._settled = False  # the trials an earlier driver ended (first step of a resumed sweep)
        self.driver_s = 0.0  # time the driver spent in this callback (queueing only) and waiting at the end

    # Tune's hooks: each only queues its update
    def on_step_begin(self, iteration: int, trials: list[Trial], **_: object) -> None:
        self._settle(trials)

    def on_experiment_end(self, trials: list[Trial], **_: object) -> None:
        self._settle(trials)  # a resumed sweep whose trials had all ended takes no step

    def _settle(self, trials: list[Trial]) -> None:
        """At a resumed sweep's first step, the runs of trials its killed driver ended but had not yet sent."""
        if self._settled:
            return
        self._settled = True
        for trial in trials:
            if trial.status in (trial.TERMINATED, trial.ERROR):
                status = trial_status(trial)
                result, config = dict(trial.last_result or {}), dict(trial.config)
                checkpoint = trial.checkpoint if status == schema.STATUS_COMPLETE else None
                self._send(trial.trial_id, functools.partial(self._settle_trial, trial_id=trial.trial_id, result=result,
                                                             config=config, status=status, checkpoint=checkpoint))

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **_: object) -> None:
        config = dict(trial.config)
        self._send(trial.trial_id, lambda client: self._start_trial(client, trial.trial_id, config))

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, object],
                        **_: object) -> None:
        update, stamp = dict(result), int(time.time() * 1000)
        self._send(trial.trial_id, lambda client: self._log(client, trial.trial_id, update, stamp))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **_: object) -> None:
        self._end(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **_: object) -> None:
        self._end(trial)

    def _end(self, trial: Trial) -> None:
        status = trial_status(trial)
        checkpoint = trial.checkpoint if status == schema.STATUS_COMPLETE else None
        self._send(trial.trial_id, lambda client: self._finish_trial(client, trial.trial_id, status, checkpoint))

    # the end of the sweep (from `sweep.run_sweep`, after the last leaderboard is written)
    def finish(self, files: ExperimentFiles, status: str = "FINISHED") -> None:
        """Queue the parent's leaderboard and report, then wait for the queue: up to FLUSH_TIMEOUT_S while the
        server answers, not at all while it does not."""
        started = time.perf_counter()
        self._send(_SWEEP, lambda client: self._finish_sweep(client, files, status))
        self._queue.put(None)
        thread = self._thread
        while thread is not None and thread.is_alive() and time.perf_counter() - started < FLUSH_TIMEOUT_S:
            thread.join(timeout=0.5)
            if time.monotonic() < self._retry_at:  # the server is down: what is queued would be dropped anyway
                break
        if thread is not None and thread.is_alive():
            logger.warning("MLflow (%s): stopped waiting for %d queued updates", self.uri, self._queue.qsize())
        lost = {key: count for key, count in self._lost.items() if count}
        if lost:
            logger.warning("MLflow (%s): %d updates were not sent (%s); the experiment folder has them all",
                           self.uri, sum(lost.values()), ", ".join(f"{key}: {count}" for key, count in lost.items()))
        self.driver_s += time.perf_counter() - started

    # the queue and its sender
    def _send(self, key: str, action: Callable[[MlflowClient], None]) -> None:
        started = time.perf_counter()
        if self._thread is None:
            self._thread = threading.Thread(target=self._sender, name="exifray-mlflow", daemon=True)
            self._thread.start()
        self._queue.put((key, action))
        self.driver_s += time.perf_counter() - started

    def _sender(self) -> None:
        while (item := self._queue.get()) is not None:
            key, action = item
            if time.monotonic() < self._retry_at:
                self._lose(key, None)
                continue
            try:
                action(self._connected())
            except Exception as exc:  # a tracking failure never stops the sweep; it is logged once per trial
                if _server_side(exc):
                    self._retry_at = time.monotonic() + RETRY_AFTER_S
                self._lose(key, exc)

    def _lose(self, key: str, exc: Exception | None) -> None:
        self._lost[key] = self._lost.get(key, 0) + 1
        if self._lost[key] == 1:
            reason = f"{type(exc).__name__}: {str(exc)[:300]}" if exc else "the server did not answer a moment ago"
            logger.warning("MLflow (%s): %s is not fully tracked: %s", self.uri,
                           "the sweep's parent run" if key == _SWEEP else f"trial {key}", reason)

    def _connected(self) -> MlflowClient:
        if self._client is None:
            self._client = mlflow_client(self.uri)
        if not self._parent:
            self._parent = self._parent_run(self._client)
        return self._client

    def _parent_run(self, client: MlflowClient) -> str:
        self._experiment_id = sweep_experiment(client, self.name, self.experiment_uri)
        found = find_run(client, self._experiment_id, self.experiment_uri, "")
        if found:
            client.update_run(found, status="RUNNING")
            return found
        run = client.create_run(self._experiment_id, run_name=self.name,
                                tags={EXPERIMENT_TAG: self.experiment_uri, TRIAL_TAG: "",
                                      "exifray.version": __version__})
        _log_params(client, run.info.run_id, {key: str(value) for key, value in self.sweep_params.items()})
        return str(run.info.run_id)

    def _run(self, client: MlflowClient, trial_id: str) -> str:
        """The trial's run: the one an earlier driver of this sweep made, or a new child of the parent."""
        if trial_id not in self._runs:
            found = find_run(client, self._experiment_id, self.experiment_uri, trial_id)
            if not found:
                run = client.create_run(self._experiment_id, run_name=f"trial_{trial_id}",
                                        tags={PARENT_TAG: self._parent, EXPERIMENT_TAG: self.experiment_uri,
                                              TRIAL_TAG: trial_id})
                found = str(run.info.run_id)
            self._runs[trial_id] = found
        return self._runs[trial_id]

    def _start_trial(self, client: MlflowClient, trial_id: str, config: Mapping[str, object]) -> None:
        run_id = self._run(client, trial_id)
        client.update_run(run_id, status="RUNNING")
        _log_params(client, run_id, trial_params(config))

    def _log(self, client: MlflowClient, trial_id: str, result: Mapping[str, object], stamp: int) -> None:
        """A result's metrics at its step, and its text outcomes as tags."""
        from mlflow.entities import Metric, RunTag

        step = step if isinstance(step := result.get("training_iteration"), int) else 0
        client.log_batch(self._run(client, trial_id),
                         metrics=[Metric(key, value, stamp, step) for key, value in result_metrics(result).items()],
                         tags=[RunTag(f"exifray.{key}", str(result[key])) for key in schema.FINAL_TEXT_KEYS
                               if result.get(key) is not None])

    def _finish_trial(self, client: MlflowClient, trial_id: str, status: str, checkpoint: Checkpoint | None) -> None:
        run_id = self._run(client, trial_id)
        client.set_tag(run_id, "exifray.status", status)
        if checkpoint is not None:
            _log_checkpoint(client, run_id, checkpoint)
        client.set_terminated(run_id, status=_MLFLOW_STATUS[status])

    def _settle_trial(self, client: MlflowClient, trial_id: str, result: Mapping[str, object],
                      config: Mapping[str, object], status: str, checkpoint: Checkpoint | None) -> None:
        """The run of a trial an earlier driver ended, unless it was ended: params, final result, checkpoint, status."""
        found = find_run(client, self._experiment_id, self.experiment_uri, trial_id)
        if found:
            if client.get_run(found).info.status != "RUNNING":
                return
            self._runs[trial_id] = found  # `_run` need not search for it again
        self._start_trial(client, trial_id, config)
        self._log(client, trial_id, result, int(time.time() * 1000))
        self._finish_trial(client, trial_id, status, checkpoint)

    def _finish_sweep(self, client: MlflowClient, files: ExperimentFiles, status: str) -> None:
        import pandas as pd

        from exifray.analysis import analyse
        from exifray.experiment import LEADERBOARD_FILE, open_experiment
        from exifray.report import write_analysis

        with tempfile.TemporaryDirectory(prefix="exifray-mlflow-") as scratch:
            board = Path(scratch) / LEADERBOARD_FILE
            board.write_bytes(files.read_bytes(LEADERBOARD_FILE))
            client.log_artifact(self._parent, str(board))
            report = Path(scratch) / "analysis"
            write_analysis(analyse(open_experiment(files.uri)), str(report), ("html",))
            client.log_artifacts(self._parent, str(report), artifact_path="analysis")
            self._end_lost_trials(client, set(pd.read_csv(board, dtype={"trial_id": str})["trial_id"]))
        client.set_terminated(self._parent, status=status)

    def _end_lost_trials(self, client: MlflowClient, trial_ids: set[str]) -> None:
        """A driver killed between starting a trial and saving Tune's state leaves that trial's run RUNNING, and the
        resumed sweep never knows the trial: such runs end KILLED, saying why."""
        experiment_id = client.get_run(self._parent).info.experiment_id
        children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{_quoted(self._parent)}' and "
                                                       "attributes.status = 'RUNNING'", max_results=1000)
        for run in children:
            if run.data.tags.get(TRIAL_TAG, "") not in trial_ids:
                client.set_tag(run.info.run_id, "exifray.lost", "the driver was killed before Tune saved this trial; "
                               "the resumed sweep does not have it")
                client.set_terminated(run.info.run_id, status="KILLED")


def mlflow_client(uri: str) -> MlflowClient:
    """A client with exifray's retry defaults (MLFLOW_CLIENT_DEFAULTS; a user's own settings win)."""
    for variable, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def sweep_experiment(client: MlflowClient, name: str, experiment_uri: str) -> str:
    """The id of the MLflow experiment named after the sweep, made when there is none."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, tags={EXPERIMENT_TAG: experiment_uri}))


def find_run(client: MlflowClient, experiment_id: str, experiment_uri: str, trial_id: str) -> str:
    """The run of a trial of the sweep at `experiment_uri` ("" for the sweep's parent run), or "" when none."""
    where = (f"tags.`{EXPERIMENT_TAG}` = '{_quoted(experiment_uri)}' and tags.`{TRIAL_TAG}` = '{_quoted(trial_id)}'")
    runs = client.search_runs([experiment_id], filter_string=where, max_results=1,
                              order_by=["attributes.start_time ASC"])
    return str(runs[0].info.run_id) if runs else ""


def _log_checkpoint(client: MlflowClient, run_id: str, checkpoint: Checkpoint) -> None:
    """The final checkpoint as the run's `final/` artifacts: read in place when local, else downloaded first."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        client.log_artifacts(run_id, checkpoint.path, artifact_path="final")
        return
    with tempfile.TemporaryDirectory(prefix="exifray-mlflow-") as scratch:
        client.log_artifacts(run_id, checkpoint.to_directory(scratch), artifact_path="final")


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[start:start + 100])


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


def _server_side(exc: Exception) -> bool:
    """A failure of the server or the network (try again later), not a request MLflow refused."""
    status = getattr(exc, "get_http_status_code", None)
    return not callable(status) or int(status()) >= 500


# --- Weights & Biases ----------------------------------------------------------------------------------------

def wandb_tracking(project: str, group: str) -> Callback:
    """Ray's W&B callback with the outcomes as config, the final checkpoint as an artifact, one run per trial
    across a resume, and the driver's WANDB_MODE / WANDB_DIR passed to each trial's `wandb.init`. Built here, not at
    import: importing W&B (which Ray's module does) makes temporary folders a sweep without --wandb should not."""
    import pyarrow.fs
    from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor

    class FlushedLoggingActor(_WandbLoggingActor):
        def run(self) -> None:  # `wandb.finish` returns before W&B's service has written the run out, and Ray then
            try:  # kills the actor (no atexit): an offline run was seen unwritten. `teardown` waits for the service.
                super().run()
            finally:
                self._wandb.teardown()

    class WandbTracking(_PicklesInert, WandbLoggerCallback):
        AUTO_CONFIG_KEYS = [*WandbLoggerCallback.AUTO_CONFIG_KEYS, *schema.FINAL_TEXT_KEYS]
        _logger_actor_cls = FlushedLoggingActor

        def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
            checkpoint = trial.checkpoint
            if (not failed and schema.is_final(trial.last_result) and checkpoint is not None
                    and isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem)
                    and trial in self._trial_queues):
                self._trial_queues[trial].put((_QueueItem.CHECKPOINT, checkpoint.path))
            super().log_trial_end(trial, failed)

    init: dict[str, object] = {"resume": "allow", "dir": os.environ.get("WANDB_DIR") or os.getcwd()}
    if os.environ.get("WANDB_MODE"):
        init["mode"] = os.environ["WANDB_MODE"]
    return WandbTracking(project=project, group=group, excludes=sorted(_NOT_METRICS - {"training_iteration"}),
                         **init)
