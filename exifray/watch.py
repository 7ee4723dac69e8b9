"""`exifray leaderboard EXPERIMENT --watch`: the leaderboard and HTML report kept current while a sweep runs.

Every `interval_s` it reads what Tune has saved so far (a local folder or an s3:// experiment), rewrites the
tables and the report (which reloads itself while the sweep runs) and prints the top of the table when more
trials have finished. It ends when the sweep's status file (`sweep_status.py`) says the sweep ended, when the
sweep's heartbeat stops (its driver died: said, exit code 1), or on Ctrl-C, and leaves the final report, which
no longer reloads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exifray.errors import InputNotFoundError
from exifray.experiment import open_experiment
from exifray.experiment_files import ExperimentFiles
from exifray.sweep_status import FAILED, FINISHED, LOST, NOT_STARTED, read_status, verdict

if TYPE_CHECKING:
    from exifray.analysis import Analysis
    from exifray.experiment import Experiment

logger = logging.getLogger(__name__)


@dataclass
class Watched:
    """How a watch ended: the sweep's verdict, the reports written, the finished trials last seen."""

    verdict: str
    reports: int
    finished: int


def watch(experiment: str, out: str, formats: Sequence[str], *, interval_s: float = 10.0,
          analyse: Callable[[Experiment], Analysis] | None = None, say: Callable[[str], None] = print,
          stop: threading.Event | None = None) -> Watched:
    """Rewrite the analysis of `experiment` into `out` until its sweep ends (or `stop` is set, as Ctrl-C does).
    `analyse`: how to analyse it (default: `analysis.analyse` with its defaults)."""
    from exifray.analysis import analyse as default_analyse
    from exifray.analysis import format_summary
    from exifray.report import write_analysis

    files = ExperimentFiles.at(experiment)
    stop = stop or threading.Event()
    reports, finished, state = 0, -1, NOT_STARTED
    refresh = max(1, round(interval_s))
    try:
        while True:
            state = verdict(read_status(files))
            ended = state in (FINISHED, FAILED, LOST) or stop.is_set()
            try:
                analysis = (analyse or default_analyse)(open_experiment(experiment))
            except InputNotFoundError as exc:  # not started yet, or no trial saved yet
                if ended:
                    raise
                logger.debug("waiting for the sweep: %s", exc)
            except Exception as exc:  # Tune's files caught mid-write: read again next time, unless the sweep ended
                if ended:
                    raise
                logger.warning("could not read %s yet (%s: %s); trying again in %g s", experiment,
                               type(exc).__name__, exc, interval_s)
            else:
                statuses = analysis.experiment.frame["status"]
                if state == NOT_STARTED and not statuses.isin(["running", "pending"]).any():
                    ended = True  # written before sweeps kept a status file, and done
                write_analysis(analysis, out, formats, refresh_s=None if ended else refresh)
                reports += 1
                done = int(statuses.isin(["complete", "stopped", "error"]).sum())
                if done != finished or ended:
                    finished = done
                    say(f"{time.strftime('%H:%M:%S')} {done}/{len(analysis.experiment.frame)} trials finished "
                        f"(sweep {state})\n{format_summary(analysis, k=5)}")
            if ended:
                break
            stop.wait(interval_s)
    except KeyboardInterrupt:
        stop.set()
        return watch(experiment, out, formats, interval_s=0, analyse=analyse, say=say, stop=stop)
    if state == LOST:
        status = read_status(files) or {}
        say(f"the sweep's driver stopped sending heartbeats (last at {time.ctime(float(str(status.get('heartbeat'))))}"
            f" on {status.get('host')}, pid {status.get('pid')}): it died; resume it with `exifray sweep ... "
            f"--resume`. The report is as it last saw the experiment.")
    return Watched(state, reports, finished)
