"""The tf.data feed of dense phases (`dataset_batches`): the batches Keras trains on from `array_batches`, in the
same order, so that a trial gives the same numbers whichever feed its phase uses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from exifray.batches import array_batches, dataset_batches

N, BATCH = 70, 16  # 5 batches an epoch, the last of 6 rows


def _arrays() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(3)
    inputs = {"features": rng.normal(size=(N, 8)).astype(np.float32),
              "exif": rng.normal(size=(N, 3)).astype(np.float32)}
    return inputs, np.eye(4, dtype=np.float32)[rng.integers(0, 4, N)]


def _trained(feed: object, steps_per_execution: int, initial_epoch: int, epochs: int,
             steps_per_epoch: int | None) -> list[np.ndarray]:
    """Weights after Keras fits a seeded two-input model on `feed` with plain SGD: they depend on the batch order."""
    import keras

    keras.utils.set_random_seed(11)
    features, exif = keras.Input((8,), name="features"), keras.Input((3,), name="exif")
    hidden = keras.layers.Dense(6, activation="tanh")(keras.layers.Concatenate()([features, exif]))
    model = keras.Model({"features": features, "exif": exif}, keras.layers.Dense(4, activation="softmax")(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy",
                  steps_per_execution=steps_per_execution)
    model.fit(feed, initial_epoch=initial_epoch, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
              verbose=0)
    return [np.asarray(weights) for weights in model.get_weights()]


@pytest.mark.parametrize(("steps_per_execution", "start_epoch"), [(1, 0), (5, 0), (5, 3)])
def test_keras_trains_on_the_same_batches_from_both_feeds(steps_per_execution: int, start_epoch: int) -> None:
    inputs, targets = _arrays()
    epochs = 3
    expected = _trained(array_batches(inputs, targets, BATCH, shuffle=True, seed=4, start_epoch=start_epoch),
                        steps_per_execution, start_epoch, start_epoch + epochs, None)
    fed = _trained(dataset_batches(inputs, targets, BATCH, seed=4, start_epoch=start_epoch, epochs=epochs),
                   steps_per_execution, start_epoch, start_epoch + epochs, math.ceil(N / BATCH))
    for got, want in zip(fed, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    other_seed = _trained(dataset_batches(inputs, targets, BATCH, seed=5, start_epoch=start_epoch, epochs=epochs),
                          steps_per_execution, start_epoch, start_epoch + epochs, math.ceil(N / BATCH))
    assert not all(np.allclose(a, b, atol=1e-4) for a, b in zip(other_seed, expected, strict=True))  # order matters


def test_each_epoch_visits_every_row_once_in_a_new_order() -> None:
    inputs, targets = _arrays()
    inputs["row"] = np.arange(N, dtype=np.int32)
    batches = list(dataset_batches(inputs, targets, BATCH, seed=4, start_epoch=0, epochs=2).as_numpy_iterator())
    assert [len(y) for _, y in batches] == [16, 16, 16, 16, 6] * 2
    epochs = [np.concatenate([x["row"] for x, _ in batches[i * 5:(i + 1) * 5]]) for i in range(2)]
    for rows in epochs:
        assert sorted(rows.tolist()) == list(range(N))
        first = batches[0][0]
        assert first["features"].dtype == np.float32 and first["row"].dtype == np.int32
    assert epochs[0].tolist() != epochs[1].tolist()
    x, y = batches[0]
    np.testing.assert_array_equal(x["features"], inputs["features"][x["row"]])  # each row with its own target
    np.testing.assert_array_equal(y, targets[x["row"]])


class _Tracked(np.ndarray):
    """An ndarray that a weak reference can follow."""


def test_the_pipeline_holds_its_arrays_while_it_lives_and_no_longer() -> None:
    import gc
    import weakref

    def pipeline() -> tuple[object, weakref.ref[np.ndarray]]:
        inputs, targets = _arrays()
        features = inputs["features"].view(_Tracked)
        return (dataset_batches({"features": features}, targets, BATCH, seed=0, start_epoch=0, epochs=2),
                weakref.ref(features))

    feed, features = pipeline()
    gc.collect()
    assert sum(1 for _ in feed) == 10  # type: ignore[attr-defined]  # still there after a collection
    del feed
    gc.collect()
    # TensorFlow keeps a numpy_function's Python function until clear_session; it must not keep the arrays
    assert features() is None


def test_the_pipeline_writes_no_file(tmp_path: Path) -> None:
    """AutoGraph would write each function it converts to a file in TMPDIR, left behind by a Ray worker that is
    stopped without a clean exit: the pipeline's functions are plain graph code, not converted. (In a process of
    its own: AutoGraph converts a function once per process, and this module's other tests use the pipeline.)"""
    import os
    import subprocess
    import sys

    script = ("import numpy as np, os\n"
              "from exifray.batches import dataset_batches\n"
              "x, y = {'x': np.zeros((70, 8), np.float32)}, np.zeros((70, 4), np.float32)\n"
              "print(sum(1 for _ in dataset_batches(x, y, 16, seed=0, start_epoch=0, epochs=1)), os.listdir())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "5 []", done.stdout  # while the process runs: no file in TMPDIR
