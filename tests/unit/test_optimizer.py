"""The trials' Adam: Keras' own optimizer and results, each variable's update one fused TensorFlow op."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exifray.models.optimizer import adam


def _model(optimizer: object, steps_per_execution: int = 1) -> object:
    """A small seeded classifier with dropout (so the seed generator's state is trained through too)."""
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((12,), name="x")
    hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile(optimizer=optimizer, loss="categorical_crossentropy",
                  steps_per_execution=steps_per_execution)
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(96, 12)).astype(np.float32),
            np.eye(3, dtype=np.float32)[rng.integers(0, 3, 96)])


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_training_with_the_fused_update_equals_keras_adam(steps_per_execution: int) -> None:
    import keras

    x, y = _data()
    runs = []
    for optimizer in (keras.optimizers.Adam(0.01), adam(0.01)):
        model = _model(optimizer, steps_per_execution)
        history = model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)  # type: ignore[attr-defined]
        runs.append((history.history["loss"], model.get_weights(),  # type: ignore[attr-defined]
                     [np.asarray(v) for v in model.optimizer.variables]))  # type: ignore[attr-defined]
    (keras_loss, keras_weights, keras_slots), (fused_loss, fused_weights, fused_slots) = runs
    np.testing.assert_allclose(fused_loss, keras_loss, rtol=1e-5)
    assert len(fused_weights) == len(keras_weights) and len(fused_slots) == len(keras_slots)
    for fused, expected in zip(fused_weights + fused_slots, keras_weights + keras_slots, strict=True):
        np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-6)
    assert int(runs[1][2][0]) == 4 * 6  # the iteration count: 6 steps an epoch


def _traced_ops(optimizer: object) -> list[str]:
    """The op types of one traced `apply` of the optimizer to a two-variable model."""
    import keras
    import tensorflow as tf

    variables = [keras.Variable(np.ones((3, 2), np.float32)), keras.Variable(np.zeros((2,), np.float32))]
    optimizer.build(variables)  # type: ignore[attr-defined]
    grads = [tf.fill((3, 2), 0.5), tf.fill((2,), -0.5)]
    graph = tf.function(lambda: optimizer.apply(grads, variables)).get_concrete_function().graph  # type: ignore
    return [op.type for op in graph.get_operations()]


def test_each_variable_is_updated_by_one_fused_op() -> None:
    import keras

    assert _traced_ops(adam(0.01)).count("ResourceApplyAdam") == 2
    assert "ResourceApplyAdam" not in _traced_ops(keras.optimizers.Adam(0.01))
    amsgrad = adam(0.01)
    amsgrad.amsgrad = True  # Keras' own step: the fused kernel has no AMSGrad variant
    assert "ResourceApplyAdam" not in _traced_ops(amsgrad)


def test_a_saved_model_holds_keras_adam_and_loads_with_its_state(tmp_path: Path) -> None:
    import keras

    x, y = _data()
    model = _model(adam(0.003))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # type: ignore[attr-defined]
    model.save(tmp_path / "model.keras")  # type: ignore[attr-defined]
    loaded = keras.models.load_model(tmp_path / "model.keras")  # compiled, as a user outside exifray loads it
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()  # type: ignore[attr-defined]
    for saved, original in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):  # type: ignore
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(original))


def _custom_gradients() -> int:
    from tensorflow.python.framework import ops

    return sum(1 for name in ops._gradient_registry._registry if name.startswith("CustomGradient-"))


def test_one_replica_trains_without_registering_a_custom_gradient() -> None:
    """Keras' own Adam traces a cross-replica sum whose `tf.custom_gradient` TensorFlow registers for good, holding
    the train graph; the trials' Adam applies one replica's gradients as they are (equal results: the test above)."""
    import keras

    x, y = _data()
    before = _custom_gradients()
    _model(adam(0.01), 3).fit(x, y, batch_size=16, epochs=1, verbose=0)  # type: ignore[attr-defined]
    assert _custom_gradients() == before
    _model(keras.optimizers.Adam(0.01), 3).fit(x, y, batch_size=16, epochs=1, verbose=0)  # type: ignore
    assert _custom_gradients() > before  # (what the trials' Adam avoids)
