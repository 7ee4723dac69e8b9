"""The sweep's Tune callback: keeps `leaderboard.csv` and `optuna.journal` current and shows progress.

Why the journal is a mirror: OptunaSearch restored from a JournalStorage replays the journal and fails
(`UpdateFinishedTrialError`), so the searcher keeps its study in memory (Tune saves and restores it with the
experiment) and this callback writes each finished trial into `optuna.journal` for the dashboard.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from exifray import schema
from exifray.experiment import JOURNAL_FILE, LEADERBOARD_FILE, ExperimentFiles
from exifray.leaderboard import error_summary, trial_status, trials_frame
from exifray.space import SearchSpace

if TYPE_CHECKING:
    import optuna
    from ray.tune.experiment import Trial
    from tqdm import tqdm

logger = logging.getLogger(__name__)


class SweepCallback:
    """Keeps `leaderboard.csv` and `optuna.journal` current and shows progress; Tune pickles it with the
    experiment, so it holds no open handles (the journal storage is opened lazily)."""

    def __init__(self, space: SearchSpace, storage_path: str, name: str, echo_epochs: bool = False):
        self.space, self.storage_path, self.name = space, storage_path, name
        self.echo_epochs = echo_epochs  # one line per trial epoch in the driver's log (what `ray job logs` shows)
        self.best_val: dict[str, float] = {}
        self.intermediate: dict[str, dict[int, float]] = {}
        self.ended: dict[str, str] = {}  # trial id → how it ended, from the event (Tune's status lags behind)
        self._bar: tqdm | None = None
        self._last_log = 0.0

    # Tune's Callback interface (duck-typed so this module imports without Ray; wrapped in `tune_callback`)
    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, object],
                        **_: object) -> None:
        value = result.get(schema.VAL_F1_MACRO)
        if isinstance(value, int | float) and math.isfinite(value):
            self.best_val[trial.trial_id] = max(value, self.best_val.get(trial.trial_id, -math.inf))
        metric = result.get(self.space.metric)
        if isinstance(metric, int | float) and math.isfinite(metric) and not schema.is_final(result):
            reported = result.get("training_iteration", 0)
            step = reported if isinstance(reported, int) else 0
            self.intermediate.setdefault(trial.trial_id, {})[step] = float(metric)
        if self.echo_epochs:
            self._say(epoch_line(trial.trial_id, result))
        self._progress(trials, force=False)

    # Tune calls these before it sets the trial's own status: the event says how the trial ended.
    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **_: object) -> None:
        final = schema.is_final(trial.last_result)
        self.ended[trial.trial_id] = schema.STATUS_COMPLETE if final else schema.STATUS_STOPPED
        self._trial_finished(trials, trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **_: object) -> None:
        self.ended[trial.trial_id] = schema.STATUS_ERROR
        self._say(f"trial {trial.trial_id} failed:\n{_error_text(trial)}", logging.ERROR)
        self._trial_finished(trials, trial)

    def on_experiment_end(self, trials: list[Trial], **_: object) -> None:
        self.write_leaderboard(trials)
        self.complete_journal(trials)
        self._progress(trials, force=True)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _trial_finished(self, trials: list[Trial], trial: Trial) -> None:
        self.write_leaderboard(trials)
        try:
            self._append_journal(trial)
        except Exception:  # the journal is a view; a failure to mirror must not stop the sweep, but is logged
            logger.exception("could not mirror trial %s into %s", trial.trial_id, JOURNAL_FILE)
        self._progress(trials, force=True)

    # --- leaderboard
    def write_leaderboard(self, trials: Sequence[Trial]) -> None:
        frame = trials_frame(self.space, trials, self.best_val, self.ended)
        ExperimentFiles(self.storage_path, self.name).write_bytes(LEADERBOARD_FILE,
                                                                  frame.to_csv(index=False).encode("utf-8"))

    # --- optuna journal mirror
    def frozen_trial(self, trial: Trial) -> optuna.trial.FrozenTrial:
        """A finished Tune trial as the Optuna trial the journal records (params, values, state, attributes)."""
        import optuna

        distributions = self.space.optuna_distributions()
        config = trial.config or {}
        params = {key: config[key] for key in distributions if key in config}
        result = trial.last_result or {}
        status = self._status(trial)
        values = [result.get(metric) for metric in self.space.metrics]
        finite = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        if status == schema.STATUS_COMPLETE and finite:
            state = optuna.trial.TrialState.COMPLETE
        elif status == schema.STATUS_STOPPED:
            state = optuna.trial.TrialState.PRUNED
        else:
            state = optuna.trial.TrialState.FAIL
        intermediate = self.intermediate.get(trial.trial_id, {}) if not self.space.multi_objective else {}
        attrs: dict[str, object] = {"tune_trial_id": trial.trial_id, "status": status,
                 **{key: result[key] for key in (schema.TEST_F1_MACRO, schema.EMISSIONS_KG, schema.ENERGY_KWH,
                                                 schema.TRAIN_TIME_S) if isinstance(result.get(key), int | float)}}
        error = error_summary(trial)
        if error:
            attrs["error"] = error
        return optuna.trial.create_trial(
            params=params, distributions={key: distributions[key] for key in params},
            values=values if state == optuna.trial.TrialState.COMPLETE else None, state=state,
            intermediate_values=intermediate, user_attrs=attrs)

    def _study(self, storage: optuna.storages.BaseStorage) -> optuna.Study:
        import optuna

        directions = ["maximize" if mode == "max" else "minimize" for mode in self.space.modes]
        return optuna.create_study(storage=storage, study_name=self.name, directions=directions,
                                   load_if_exists=True)

    def _with_journal(self, action: Callable[[optuna.Study], None]) -> None:
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
                local.write_bytes(files.read_bytes(JOURNAL_FILE))
            action(self._study(JournalStorage(JournalFileBackend(str(local)))))
            files.write_bytes(JOURNAL_FILE, local.read_bytes())

    def _status(self, trial: Trial) -> str:
        return self.ended.get(trial.trial_id) or trial_status(trial)

    def _append_journal(self, trial: Trial) -> None:
        self._append_missing([trial])

    def complete_journal(self, trials: Sequence[Trial]) -> None:
        """At the end: append every finished trial the journal lacks (trials that finished while a killed driver
        was down), so it holds exactly one Optuna trial per finished Tune trial."""
        finished = [t for t in trials if self._status(t) in schema.FINISHED_STATUSES]
        self._append_missing(sorted(finished, key=lambda t: t.trial_id))

    def _append_missing(self, trials: Sequence[Trial]) -> None:
        """Only ever append (Optuna's journal readers, optuna-dashboard among them, keep a byte offset per line:
        a rewritten file breaks them); a trial already recorded is not added again."""
        def append(study: optuna.Study) -> None:
            known = {t.user_attrs.get("tune_trial_id") for t in study.get_trials(deepcopy=False)}
            for trial in trials:
                if trial.trial_id not in known:
                    study.add_trial(self.frozen_trial(trial))

        self._with_journal(append)

    # --- progress
    def _say(self, line: str, level: int = logging.INFO) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            logger.log(level, "%s", line)

    def _progress(self, trials: Sequence[Trial], force: bool) -> None:
        statuses = [self._status(t) for t in trials]
        done = sum(s in schema.FINISHED_STATUSES for s in statuses)
        best = max(self.best_val.values(), default=math.nan)
        summary = {"running": statuses.count(schema.STATUS_RUNNING), "errored": statuses.count(schema.STATUS_ERROR),
                   "best_epoch_val_f1_macro": f"{best:.3f}"}  # any epoch's: the leaderboard ranks final values
        if sys.stderr.isatty():
            from tqdm import tqdm

            if self._bar is None:
                self._bar = tqdm(total=self.space.total_trials, desc=f"sweep {self.name}", unit="trial")
            self._bar.n = done
            self._bar.set_postfix(summary, refresh=True)
        elif force or time.monotonic() - self._last_log > 30:
            self._last_log = time.monotonic()
            logger.info("sweep %s: %d/%d trials done (%d running, %d errored), best epoch val_f1_macro %.3f (the "
                        "leaderboard ranks each trial's final value)", self.name,
                        done, self.space.total_trials, summary["running"], summary["errored"], best)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_bar"] = None
        return state


def _error_text(trial: Trial) -> str:
    """A failed trial's whole error, traceback included: Tune has written it to the trial's local folder before
    it calls the callback (the copy in storage may not be there yet)."""
    local = getattr(trial, "error_file", None)
    if local and Path(local).is_file():
        return Path(local).read_text(encoding="utf-8", errors="replace").strip()
    saved = trial.get_error()
    return str(saved).strip() if saved else f"no error text was saved ({error_summary(trial) or 'unknown error'})"


def epoch_line(trial_id: str, result: Mapping[str, object]) -> str:
    """A trial's report as one log line: an epoch's losses and validation F1, or the final test scores."""
    def number(key: str) -> str:
        value = result.get(key)
        return f"{value:.4f}" if isinstance(value, int | float) else "-"

    if schema.is_final(result):
        return (f"trial {trial_id} done: val_f1_macro {number(schema.VAL_F1_MACRO)} test_f1_macro "
                f"{number(schema.TEST_F1_MACRO)} after {result.get(schema.EPOCHS, '?')} epochs")
    return (f"trial {trial_id} epoch {result.get(schema.EPOCH, '?')} ({result.get(schema.PHASE, '?')}): val_loss "
            f"{number(schema.VAL_LOSS)} val_f1_macro {number(schema.VAL_F1_MACRO)} val_accuracy "
            f"{number(schema.VAL_ACCURACY)} {number(schema.EPOCH_TIME_S)} s")


def tune_callback(space: SearchSpace, storage_path: str, name: str, echo_epochs: bool = False) -> SweepCallback:
    """The callback as a `ray.tune.Callback` (this module imports without Ray; Tune wants its base class)."""
    from ray.tune import Callback

    class _SweepTuneCallback(SweepCallback, Callback):
        pass

    return _SweepTuneCallback(space, storage_path, name, echo_epochs)


