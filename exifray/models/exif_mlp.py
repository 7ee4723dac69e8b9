"""The EXIF branch: an MLP 256-128-64-32 with ReLU over the encoded EXIF vector (DESIGN.md §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keras import KerasTensor

EXIF_MLP_UNITS = (256, 128, 64, 32)


def exif_branch(exif_input: KerasTensor, dropout: float, units: tuple[int, ...] = EXIF_MLP_UNITS) -> KerasTensor:
    from keras import layers

    x = exif_input
    for index, width in enumerate(units):
        x = layers.Dense(width, activation="relu", name=f"exif_dense{index}")(x)
        if dropout and index < len(units) - 1:
            x = layers.Dropout(dropout, name=f"exif_dropout{index}")(x)
    return x
