"""The EXIF branch: an MLP 256-128-64-32 with ReLU over the encoded EXIF vector (DESIGN.md §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

EXIF_MLP_UNITS = (256, 128, 64, 32)


def exif_layers(dropout: float, units: tuple[int, ...] = EXIF_MLP_UNITS) -> list[keras.layers.Layer]:
    """The branch's layers in order (dense ReLU, dropout between them)."""
    from keras import layers

    stack: list[keras.layers.Layer] = []
    for index, width in enumerate(units):
        stack.append(layers.Dense(width, activation="relu", name=f"exif_dense{index}"))
        if dropout and index < len(units) - 1:
            stack.append(layers.Dropout(dropout, name=f"exif_dropout{index}"))
    return stack
