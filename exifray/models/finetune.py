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
    candidates = backbone_layers(backbone)
    top = set(id(layer) for layer in candidates[-fine_tune_layers:]) if fine_tune_layers > 0 else set()
    unfrozen = 0
    for layer in candidates:
        trainable = id(layer) in top and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += int(trainable and bool(layer.weights))
    return unfrozen


def backbone_layers(backbone: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers, its input excepted: what `fine_tune_layers` counts from the top."""
    from keras import layers

    return [layer for layer in backbone.layers if not isinstance(layer, layers.InputLayer)]


def trainable_layer_names(backbone: keras.Model) -> list[str]:
    return [layer.name for layer in backbone.layers if layer.trainable and layer.weights]


def cut_below_top(backbone: keras.Model, fine_tune_layers: int) -> keras.layers.Layer | None:
    """The highest layer of the backbone below its top `fine_tune_layers` layers whose output alone everything
    above it is computed from: the frozen layers up to it give the same activations every epoch, so the
    fine-tuning phase can train on them. None when the top layers reach down to the input (nothing to cut) or
    no single tensor separates them (a branch from below the cut would be needed above it)."""
    import keras

    candidates = backbone_layers(backbone)
    boundary = len(candidates) - fine_tune_layers
    top = candidates[boundary:] if boundary > 0 else []
    for index in range(boundary, 0, -1):  # the first index that works cuts highest: the least work above it
        cut = candidates[index - 1].output
        try:
            above = keras.Model(cut, backbone.output)
        except ValueError:  # the output also needs a tensor from below `cut`
            continue
        if {id(layer) for layer in top} <= {id(layer) for layer in above.layers}:
            return candidates[index - 1]
    return None
