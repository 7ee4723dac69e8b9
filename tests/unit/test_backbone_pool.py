"""A warm worker's pool of pretrained backbones (`exifray.models.backbone_pool`), on real Keras models: a pooled
backbone is lent once per trial and comes back exactly as it was built, whatever the trial before did to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from exifray.models import backbone_pool
from exifray.models.fusion import build_backbone
from exifray.models.registry import get_backbone_spec

SPEC = get_backbone_spec("TestTinyCNN")


@pytest.fixture
def weights(tmp_path: Path) -> Iterator[str]:
    from exifray.testing.datasets import weights_files

    backbone_pool.with_pool(False)
    yield weights_files(tmp_path, ["TestTinyCNN"], 32)["TestTinyCNN"]
    backbone_pool.with_pool(False)


def _values(model: object) -> list[np.ndarray]:
    return [np.array(variable.numpy()) for variable in model.variables]  # type: ignore[attr-defined]


def test_outside_a_warm_worker_every_backbone_is_built(weights: str) -> None:
    first, reused = build_backbone(SPEC, 32, weights)
    backbone_pool.reclaim()
    second, reused_again = build_backbone(SPEC, 32, weights)
    assert second is not first and not reused and not reused_again


def test_a_pooled_backbone_comes_back_as_built_after_a_trial_changed_it(weights: str) -> None:
    backbone_pool.with_pool(True)
    first, reused = build_backbone(SPEC, 32, weights)
    built = _values(first)
    assert not reused and all(layer.trainable for layer in first.layers)
    # what a fine-tuning trial does to it: trains some layers, freezes the rest
    for variable in first.variables:
        variable.assign(np.full(variable.shape, 0.5, dtype=variable.dtype))
    first.trainable = False
    again, reused_while_lent = build_backbone(SPEC, 32, weights)  # the same trial asks again: not the lent one
    assert again is not first and not reused_while_lent

    backbone_pool.reclaim()  # the trial ended
    second, reused = build_backbone(SPEC, 32, weights)
    assert second is first and reused
    assert all(layer.trainable for layer in second.layers)
    for value, expected in zip(_values(second), built, strict=True):
        np.testing.assert_array_equal(value, expected)
    assert any(np.any(value != 0.5) for value in built)  # the assignment above had changed them


def test_backbones_differ_by_size_and_weights_and_untrained_ones_are_never_pooled(weights: str, tmp_path: Path
                                                                                  ) -> None:
    backbone_pool.with_pool(True)
    at_32, _ = build_backbone(SPEC, 32, weights)
    at_40, _ = build_backbone(SPEC, 40, weights)
    scratch, _ = build_backbone(SPEC, 32, None)
    backbone_pool.reclaim()
    assert build_backbone(SPEC, 40, weights) == (at_40, True)
    assert build_backbone(SPEC, 32, weights) == (at_32, True)
    again, reused = build_backbone(SPEC, 32, None)
    assert again is not scratch and not reused  # weights 'none': drawn from the trial's seed, built every time

    other = tmp_path / "other.weights.h5"  # other values: another identity (sha256), another backbone
    for variable in scratch.variables:
        variable.assign(np.full(variable.shape, 0.25, dtype=variable.dtype))
    scratch.save_weights(str(other))
    backbone_pool.reclaim()
    from_other, reused = build_backbone(SPEC, 32, str(other))
    assert from_other is not at_32 and not reused
    np.testing.assert_array_equal(from_other.variables[0].numpy(), 0.25)


def test_the_pool_keeps_its_most_recently_lent_backbones(weights: str) -> None:
    backbone_pool.with_pool(True)
    sizes = [32 + 8 * index for index in range(backbone_pool.POOL_SIZE + 1)]
    models = {size: build_backbone(SPEC, size, weights)[0] for size in sizes}
    backbone_pool.reclaim()
    assert build_backbone(SPEC, sizes[-1], weights) == (models[sizes[-1]], True)
    dropped, reused = build_backbone(SPEC, sizes[0], weights)  # the first one was dropped when the pool was full
    assert dropped is not models[sizes[0]] and not reused
