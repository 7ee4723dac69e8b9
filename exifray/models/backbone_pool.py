"""A warm worker's built backbones: a pretrained backbone is built once per worker and lent to one trial at a time.

    with_pool(True)                          # a warm sweep worker, at its first trial
    if pooling():                            # inside `fusion.build_backbone`, for a pretrained backbone:
        backbone, reused = lend(key, build)  # built (and pooled), or the pooled one put back as built
    reclaim()                                # the worker's reset: the previous trial is gone, its loans come back

Building a Keras application and loading its weights file is the slowest step of a fine-tuning trial's start
(MobileNetV2 at 96 px: 1.5 s, EfficientNetB0: 2.1 s, on one core); putting back the weights it was built with takes
0.1 s. A pooled backbone is lent as it was built: every variable (weights, BatchNorm statistics, seed generator
states) holds the value it had when it was built, and every layer is trainable, as Keras builds it; the trial then
freezes and unfreezes it as a fresh one would. Only pretrained backbones (ImageNet or a weights file) are pooled: a
backbone trained from scratch draws its initial weights from the trial's seed. A backbone is lent once per trial
(asked for again while lent, the pool builds another, not pooled), and only while pooling is on, which a warm sweep
worker turns on: outside one, a caller may keep a model while it builds the next, and must get its own backbone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import keras
    import numpy as np

POOL_SIZE: Final = 4  # backbones kept per worker, least recently lent dropped first (a sweep's (backbone, size)s)


@dataclass
class _Pooled:
    model: keras.Model
    built_values: list[np.ndarray]  # every variable's value as built (`model.variables`: seed states included)
    lent: bool = True


_POOL: OrderedDict[tuple[str, ...], _Pooled] = OrderedDict()
_ON: list[bool] = [False]


def with_pool(on: bool) -> None:
    """Lend pooled backbones from now on (a warm sweep worker), or build every one afresh (dropping the pool)."""
    _ON[0] = on
    if not on:
        _POOL.clear()


def pooling() -> bool:
    """Whether backbones are pooled in this process (a warm sweep worker)."""
    return _ON[0]


def reclaim() -> None:
    """The trial that borrowed the backbones has ended and dropped its models: each can be lent again."""
    for pooled in _POOL.values():
        pooled.lent = False


def lend(key: tuple[str, ...], build: Callable[[], keras.Model]) -> tuple[keras.Model, bool]:
    """(backbone, whether it came from the pool): the pooled backbone under `key` put back as it was built, or one
    `build` makes (pooled when pooling is on and none is pooled under `key`)."""
    pooled = _POOL.get(key) if _ON[0] else None
    if pooled is not None and not pooled.lent:
        for variable, value in zip(pooled.model.variables, pooled.built_values, strict=True):
            variable.assign(value)
        pooled.model.trainable = True  # every layer, as built (the trial freezes what it freezes)
        pooled.lent = True
        _POOL.move_to_end(key)
        return pooled.model, True
    model = build()
    if _ON[0] and pooled is None:
        _POOL[key] = _Pooled(model, [variable.numpy().copy() for variable in model.variables])
        while len(_POOL) > POOL_SIZE:
            _POOL.popitem(last=False)
    return model, False
