"""Latency measurement: one traced warm-up batch, then up to four full batches timed, batch by batch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exifray.models.runtime import inference_ms


def _recording_model() -> tuple[object, list[int]]:
    """A real Keras model that records the size of every batch it predicts."""
    import keras

    calls: list[int] = []

    class Recording(keras.Model):
        def predict_on_batch(self, x):  # type: ignore[no-untyped-def, override]
            calls.append(len(x["x"]))
            return super().predict_on_batch(x)

        def predict(self, x, batch_size=None, **kwargs):  # type: ignore[no-untyped-def, override]
            raise AssertionError("predict() builds a data adapter per call: the latency is timed batch by batch")

    inputs = keras.Input((4,), name="x")
    return Recording({"x": inputs}, keras.layers.Dense(2)(inputs)), calls


@pytest.mark.parametrize(("photos", "expected"), [
    (1000, [32] * 5),  # warm-up batch, then 4 full batches
    (70, [32] * 3),  # only full batches are timed: a partial one would be traced again
    (10, [10, 10]),  # fewer photos than a batch: one batch of them
])
def test_latency_traces_one_batch_then_times_up_to_four_full_ones(photos: int,
                                                                  expected: list[int]) -> None:
    model, calls = _recording_model()
    latency = inference_ms(model, {"x": np.zeros((photos, 4), np.float32)}, 32)  # type: ignore[arg-type]
    assert calls == expected
    assert 0 < latency < 1000


def test_latency_of_no_photos_is_nan() -> None:
    model, calls = _recording_model()
    assert math.isnan(inference_ms(model, {"x": np.zeros((0, 4), np.float32)}, 32))  # type: ignore[arg-type]
    assert calls == []


def test_graph_rewrites_are_skipped_only_inside_the_window_and_restored() -> None:
    import tensorflow as tf

    from exifray.models.runtime import without_graph_rewrites

    def disabled() -> bool:
        return bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))

    assert not disabled()
    with without_graph_rewrites():
        assert disabled()
    assert not disabled()
    with without_graph_rewrites(False):  # a convolutional phase keeps them
        assert not disabled()
    with pytest.raises(RuntimeError), without_graph_rewrites():
        raise RuntimeError("a phase that fails")
    assert not disabled()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # the user's own setting stays
    try:
        with without_graph_rewrites():
            assert disabled()
        assert disabled()
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
