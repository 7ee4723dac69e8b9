from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from exifray.testing.mlflow_server import MlflowServer


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """A 240-photo synthetic indoor/outdoor dataset at 32 px, shared by the training tests."""
    from exifray.testing.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("small"), photos=240, seed=3, image_size=48, sizes=(32,),
                        shard_size=100)


@pytest.fixture(scope="session")
def mlflow_tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` on 127.0.0.1 (sqlite, local artifacts) for the tests that track sweeps."""
    from exifray.testing.mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
