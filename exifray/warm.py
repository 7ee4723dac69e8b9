"""Warm trial workers: one Ray actor process runs trial after trial (Tune's `reuse_actors`), and retires in time.

    with retiring_workers():        # on the driver, around `Tuner.fit()`
        tuner.fit()

A reused worker keeps what is expensive and harmless to keep: the imports (Ray, TensorFlow, Keras, CodeCarbon),
the TF runtime with its thread pools (sized by the first trial; every trial of a sweep asks for the same CPUs),
and the object-store references that `tune.with_parameters` hands each trial. It must not keep anything of the
trial before: each trial runs in a new thread (Keras' state is per thread), sets its seeds, closes its CodeCarbon
tracker and its shard readers when it ends, and `clear_previous_trial` drops TensorFlow's kernel cache and
collects what the finished trial left before the next one starts.

Each worker counts its trials and measures its private memory (USS: resident memory would count the dataset
arrays it shares with every trial on the node) when a trial ends, in a thread of its own while the driver takes
the trial's end and Tune resets the worker (reading it takes 15-30 ms; `trial_ended`), and the next trial reads it
as it begins. Its `max_trials_per_worker`-th trial, or the first one that begins with the worker grown more than
`worker_growth_mb` over what it held after its first trial, reports `worker_retires`; on the driver,
`retiring_workers` then keeps Tune from caching that actor, so Tune stops it and starts a fresh one for the next
trial. Retiring never fails or retries a trial.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from exifray import schema

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

# How long a reused worker waits for the previous trial's thread to end (Tune's own default is 2 s, which a
# trial stopped by ASHA mid-epoch can miss while it closes its tracker: Tune would then fail the next trial).
RESET_WAIT_S: Final = 300
THREAD_TIMEOUT_ENV: Final = "TUNE_FUNCTION_THREAD_TIMEOUT_S"


@dataclass
class _Worker:
    trials: int = 0  # trials this process has begun
    received_at: float = 0.0  # time.time() when it received its current trial (0: at its process start)
    first_uss: float | None = None  # private memory when its first trial ended, bytes
    measuring: threading.Thread | None = None  # measuring the private memory since the last trial ended
    ended_uss: float | None = None  # what it measured
    frozen: bool = False  # its first reset froze what its first trial left out of later collections


_WORKER = _Worker()


def _uss() -> float:
    import psutil

    return float(psutil.Process().memory_full_info().uss)


def trial_ended() -> None:
    """The trial's function is done (finished, stopped or failed): measure the private memory in the background,
    off the path from this trial's end to the next one's start; the next `begin_trial` waits for it."""

    def measure() -> None:
        _WORKER.ended_uss = _uss()

    _WORKER.ended_uss = None
    _WORKER.measuring = threading.Thread(target=measure, name="exifray-worker-memory", daemon=True)
    _WORKER.measuring.start()


def _private_memory() -> float:
    """The private memory measured when the last trial ended, or now (a worker's first trial)."""
    thread, _WORKER.measuring = _WORKER.measuring, None
    if thread is not None:
        thread.join()
    uss, _WORKER.ended_uss = _WORKER.ended_uss, None
    return uss if uss is not None else _uss()


def received(reused: bool) -> None:
    """The worker received a trial: a fresh worker at its process start, a reused one now."""
    _WORKER.received_at = time.time() if reused else 0.0


def received_at() -> float:
    """When this worker received its current trial (time.time())."""
    if _WORKER.received_at:
        return _WORKER.received_at
    import psutil

    return float(psutil.Process().create_time())


def begin_trial(max_trials: int, growth_mb: float) -> dict[str, object]:
    """Count a trial on this worker and decide whether the worker retires after it; the fields every report of
    the trial carries (`worker_trial`, `worker_uss_mb`, `worker_retires`, `worker_threads`)."""
    _WORKER.trials += 1
    uss = _private_memory()  # (joined first: its thread is not counted in `worker_threads`)
    if _WORKER.trials == 2:
        _WORKER.first_uss = uss
    grown = uss - _WORKER.first_uss if _WORKER.first_uss is not None else 0.0
    retires = _WORKER.trials >= max_trials or grown > growth_mb * 2**20
    if retires:
        logger.info("worker %d retires after this trial (its trial %d of at most %d; private memory %.0f MiB, "
                    "%+.0f MiB since its first trial, limit %g)", os.getpid(), _WORKER.trials, max_trials,
                    uss / 2**20, grown / 2**20, growth_mb)
    return {schema.WORKER_TRIAL: _WORKER.trials, schema.WORKER_USS_MB: uss / 2**20,
            schema.WORKER_RETIRES: retires, schema.WORKER_THREADS: threading.active_count()}


def wait_for_previous_trial() -> None:
    """Let Tune's reset wait up to `RESET_WAIT_S` for the previous trial's thread (unless the user set it)."""
    os.environ.setdefault(THREAD_TIMEOUT_ENV, str(RESET_WAIT_S))


def freeze_runtime() -> None:
    """At a fresh worker's first trial: import Keras (the trial would next) and freeze what is then alive (the
    modules, Ray's worker, the TF runtime) out of later garbage collections. A warm reset then collects only what
    trials left; left to the first reset, this first full collection took 0.3 s of the second trial's start."""
    import keras  # noqa: F401  (importing it does not fix TF's thread pools: the trial still sizes them)

    gc.collect()
    gc.freeze()


def clear_previous_trial() -> None:
    """What a finished trial leaves process-wide: TF's cached kernels and graph, the custom gradients its traces
    registered (each holding its graph), its garbage, Arrow's freed buffers, its loan of pooled backbones. Called
    by a reused worker before its next trial; Keras' per-thread state left with the thread."""
    if "keras" in sys.modules:
        import keras

        from exifray.models.runtime import forget_custom_gradients

        keras.backend.clear_session(free_memory=False)  # Keras' global state, TF's graph and kernel cache
        forget_custom_gradients()  # what holds the finished trial's graphs traced through a custom gradient
    gc.collect()
    if not _WORKER.frozen:
        # What survives the first trial's collection (at the worker's first reset) is the worker's own too (what TF
        # and Keras build on first use): frozen, later collections skip it, and a reset's gc takes milliseconds
        # instead of 0.2 s. (Remembered, not asked: `gc.get_freeze_count()` walks every frozen object, 0.06 s.)
        gc.freeze()
        _WORKER.frozen = True
    if "pyarrow" in sys.modules:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    if "exifray.models.backbone_pool" in sys.modules:
        from exifray.models import backbone_pool

        backbone_pool.reclaim()  # the finished trial's models are gone: its pooled backbones can be lent again


def retires(trial: Trial) -> bool:
    """Whether the trial's worker said it retires after this trial."""
    return bool((trial.last_result or {}).get(schema.WORKER_RETIRES))


@contextlib.contextmanager
def retiring_workers() -> Iterator[None]:
    """While it is open, Tune does not cache (reuse) the actor of a trial whose worker retires: it stops it, and
    the next trial gets a fresh worker. Tune has no public hook for this, so the controller's caching decision is
    wrapped here, in this one place (Ray 2.60's `TuneController._maybe_cache_trial_actor`)."""
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController._maybe_cache_trial_actor

    def maybe_cache(controller: TuneController, trial: Trial) -> bool:
        if retires(trial):
            logger.info("trial %s: its worker retires; the next trial gets a fresh one", trial.trial_id)
            return False
        return bool(original(controller, trial))

    TuneController._maybe_cache_trial_actor = maybe_cache
    try:
        yield
    finally:
        TuneController._maybe_cache_trial_actor = original
