"""Two-phase transfer learning (the keras-io EfficientNet fine-tuning recipe).

Phase 1 trains the head with the backbone frozen; phase 2 unfreezes the top `fine_tune_layers`
layers with every BatchNormalization layer kept frozen (their statistics stay those of pre-training)
and continues at a lower learning rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def freeze(backbone: keras.Model) -> None:
    backbone.trainable = False


def unfreeze_top(backbone: keras.Model, fine_tune_layers: int) -> int:
    """Make the top `fine_tune_layers` layers trainable, BatchNorm excepted; returns how many now train."""
    from keras import layers

    backbone.trainable = True
    candidates = [layer for layer in backbone.layers if not isinstance(layer, layers.InputLayer)]
    top = set(id(layer) for layer in candidates[-fine_tune_layers:]) if fine_tune_layers > 0 else set()
    unfrozen = 0
    for layer in candidates:
        trainable = id(layer) in top and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += int(trainable and bool(layer.weights))
    return unfrozen


def trainable_layer_names(backbone: keras.Model) -> list[str]:
    return [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
