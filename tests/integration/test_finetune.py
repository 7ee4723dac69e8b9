"""Freezing and unfreezing a real Keras backbone (the fine-tune phase's rule), directly."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def backbone():
    from exifray.models.registry import create_backbone

    return create_backbone("TestTinyCNN", 32)  # conv0 bn0 relu0 conv1 bn1 relu1 conv2 bn2 relu2


@pytest.mark.parametrize(("layers", "trainable", "count"), [
    (0, [], 0),
    (3, ["conv2"], 1),  # relu2 has no weights, bn2 stays frozen
    (4, ["conv2"], 1),
    (6, ["conv1", "conv2"], 2),
    (100, ["conv0", "conv1", "conv2"], 3),
])
def test_unfreeze_top_keeps_batchnorm_frozen(backbone, layers: int, trainable: list[str], count: int) -> None:
    from exifray.models.finetune import freeze, trainable_layer_names, unfreeze_top

    freeze(backbone)
    assert trainable_layer_names(backbone) == [] and backbone.trainable_weights == []
    assert unfreeze_top(backbone, layers) == count
    assert trainable_layer_names(backbone) == trainable
    assert all(not layer.trainable for layer in backbone.layers if layer.name.startswith("bn"))
    assert len(backbone.trainable_weights) == count  # one kernel per conv (use_bias=False)
