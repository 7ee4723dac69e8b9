from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """A 240-photo synthetic indoor/outdoor dataset at 32 px, shared by the training tests."""
    from exifray.config import IngestConfig
    from exifray.data.ingest import run_ingest
    from exifray.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("small")
    generate(root / "crawl", SynthConfig(photos=240, seed=3, image_size=48))
    run_ingest(IngestConfig(inputs=(str(root / "crawl"),), out=str(root / "dataset"), sizes=(32,), shard_size=100))
    return root / "dataset"
