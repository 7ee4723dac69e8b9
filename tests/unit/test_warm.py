"""A warm worker's own bookkeeping (no Ray): its trial count, private memory and when it retires."""

from __future__ import annotations

import numpy as np
import pytest

from exifray import schema, warm


@pytest.fixture
def fresh_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm, "_WORKER", warm._Worker())


def test_a_worker_retires_at_its_max_trials(fresh_worker: None) -> None:
    fields = [warm.begin_trial(max_trials=3, growth_mb=1e6) for _ in range(3)]
    assert [f[schema.WORKER_TRIAL] for f in fields] == [1, 2, 3]
    assert [f[schema.WORKER_RETIRES] for f in fields] == [False, False, True]
    assert all(f[schema.WORKER_USS_MB] > 10 and f[schema.WORKER_THREADS] >= 1 for f in fields)


def test_a_worker_retires_once_its_private_memory_grew_past_the_limit(fresh_worker: None) -> None:
    first = warm.begin_trial(max_trials=100, growth_mb=64)
    warm.trial_ended()
    second = warm.begin_trial(max_trials=100, growth_mb=64)  # the baseline: what the first trial left
    kept = np.ones(200 * 2**20, dtype=np.uint8)  # 200 MiB of private memory, touched
    warm.trial_ended()
    third = warm.begin_trial(max_trials=100, growth_mb=64)
    assert kept.sum() == 200 * 2**20
    assert not first[schema.WORKER_RETIRES] and not second[schema.WORKER_RETIRES]
    assert third[schema.WORKER_RETIRES]
    assert third[schema.WORKER_USS_MB] - second[schema.WORKER_USS_MB] > 150


def test_a_fresh_worker_received_its_trial_at_its_process_start(fresh_worker: None) -> None:
    import psutil

    warm.received(reused=False)
    assert warm.received_at() == psutil.Process().create_time()
    warm.received(reused=True)
    assert warm.received_at() > psutil.Process().create_time()


def _frozen(objects: list[list[int]]) -> int:
    """How many of these (gc-tracked) objects are frozen: `gc.get_objects()` lists every generation but the frozen
    one. (Counting `gc.get_freeze_count()` instead is thrown off by frozen objects a reset frees.)"""
    import gc

    collected = {id(o) for o in gc.get_objects()}
    return sum(1 for o in objects if id(o) not in collected)


def test_the_runtime_is_frozen_at_the_first_trial_and_what_it_left_at_the_first_reset(fresh_worker: None) -> None:
    import gc
    import sys

    try:
        warm.begin_trial(max_trials=100, growth_mb=1e6)
        warm.freeze_runtime()
        assert "keras" in sys.modules
        assert gc.get_freeze_count() > 0
        kept_from_trial_1 = [[index] for index in range(1000)]  # alive after the first trial: frozen at its reset
        assert _frozen(kept_from_trial_1) == 0
        warm.clear_previous_trial()
        assert _frozen(kept_from_trial_1) == len(kept_from_trial_1)
        warm.begin_trial(max_trials=100, growth_mb=1e6)
        kept_from_trial_2 = [[index] for index in range(1000)]  # later trials' objects stay collectable
        warm.clear_previous_trial()
        assert _frozen(kept_from_trial_2) == 0
        assert len(kept_from_trial_2) == 1000
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_the_memory_is_measured_when_a_trial_ends_off_the_next_trials_path(fresh_worker: None) -> None:
    """`trial_ended` measures in a thread of its own; the next trial's fields carry that figure, and the thread is
    gone (joined) before `worker_threads` counts the threads."""
    import threading

    warm.begin_trial(max_trials=100, growth_mb=1e6)
    threads = threading.active_count()
    kept = np.ones(100 * 2**20, dtype=np.uint8)  # what the trial leaves: in the figure taken at its end
    warm.trial_ended()
    measuring = warm._WORKER.measuring
    assert measuring is not None and measuring.name == "exifray-worker-memory"
    measured_at_end = warm._uss()
    del kept  # freed after the end: not in the figure the next trial reads
    second = warm.begin_trial(max_trials=100, growth_mb=1e6)
    assert not measuring.is_alive() and second[schema.WORKER_THREADS] == threads
    assert abs(second[schema.WORKER_USS_MB] * 2**20 - measured_at_end) < 20 * 2**20
    assert second[schema.WORKER_USS_MB] * 2**20 > warm._uss() + 80 * 2**20


def test_a_reset_frees_every_graph_the_trial_traced(fresh_worker: None) -> None:
    """A trial's graphs traced through `tf.custom_gradient` (swish, as in EfficientNet; Keras' own Adam) are held by
    TensorFlow's gradient registry; after the reset none of the trial's graphs is alive."""
    import gc
    import weakref

    import keras
    from tensorflow.python.framework.func_graph import FuncGraph

    def graphs() -> list[weakref.ref[FuncGraph]]:
        return [weakref.ref(o) for o in gc.get_objects() if isinstance(o, FuncGraph)]

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype(np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]
    try:
        warm.begin_trial(max_trials=100, growth_mb=1e6)
        warm.clear_previous_trial()  # (a worker's first reset freezes what is alive: not the trial's below)
        warm.begin_trial(max_trials=100, growth_mb=1e6)
        before = {id(ref()) for ref in graphs()}

        def trial() -> None:
            inputs = keras.Input((6,))
            model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
                keras.layers.Dense(8, activation="silu")(inputs)))
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
            model.predict_on_batch(x)

        trial()
        traced = [ref for ref in graphs() if id(ref()) not in before]
        assert traced  # the train and predict functions' graphs
        warm.clear_previous_trial()
        assert [ref() for ref in traced if ref() is not None] == []
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
