from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """A 240-photo synthetic indoor/outdoor dataset at 32 px, shared by the training tests."""
    from exifray.testing.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("small"), photos=240, seed=3, image_size=48, sizes=(32,),
                        shard_size=100)
