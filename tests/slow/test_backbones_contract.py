"""Every registered backbone builds with weights=None at a small input and has the feature size its spec says."""

from __future__ import annotations

import pytest

from exifray.models.registry import create_backbone, get_backbone_spec, list_backbones


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_builds_and_matches_its_spec(name: str) -> None:
    import numpy as np

    spec = get_backbone_spec(name)
    size = max(spec.min_image_size, 32)
    backbone = create_backbone(name, size, weights=None)
    features = backbone(np.zeros((2, size, size, 3), dtype="float32"))
    assert features.shape[0] == 2 and features.shape[-1] == spec.feature_dim
    assert len(features.shape) == 4  # a feature map; pooling belongs to the image branch
