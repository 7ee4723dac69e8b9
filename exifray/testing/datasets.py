"""Synthetic DATASET DIRs for tests, benchmarks and smoke runs: `exifray synth` followed by `exifray ingest`.

    dataset = make_dataset(tmp / "small", photos=240, seed=3, sizes=(32,))   # → tmp/small/dataset

Ingest joins the running Ray (or starts one in-process and shuts it down again).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from exifray.config import IngestConfig
from exifray.data.synth import SynthConfig


def make_crawl(root: str | Path, *, photos: int, seed: int = 0, image_size: int = 48,
               scenario: str = "indoor_outdoor", label_noise: float | None = None,
               image_signal: float | None = None) -> Path:
    """`root/crawl`: a synthetic crawl dir (SynthConfig's defaults unless given)."""
    from exifray.data.synth import generate

    crawl = Path(root) / "crawl"
    config = SynthConfig(scenario=scenario, photos=photos, seed=seed, image_size=image_size)
    if label_noise is not None:
        config = replace(config, label_noise=label_noise)
    if image_signal is not None:
        config = replace(config, image_signal=image_signal)
    generate(crawl, config)
    return crawl


def make_dataset(root: str | Path, *, photos: int, seed: int = 0, image_size: int = 48,
                 sizes: tuple[int, ...] = (32,), shard_size: int = 512, scenario: str = "indoor_outdoor",
                 label_noise: float | None = None, image_signal: float | None = None) -> Path:
    """`root/dataset`, ingested from a synthetic `root/crawl` rendered at `image_size` px."""
    from exifray.data.ingest import run_ingest

    crawl = make_crawl(root, photos=photos, seed=seed, image_size=image_size, scenario=scenario,
                       label_noise=label_noise, image_signal=image_signal)
    out = Path(root) / "dataset"
    run_ingest(IngestConfig(inputs=(str(crawl),), out=str(out), sizes=sizes, shard_size=shard_size))
    return out


def weights_files(root: str | Path, backbones: list[str] | tuple[str, ...], image_size: int) -> dict[str, str]:
    """A local weights file per backbone (`root/<name>.weights.h5`, its initial weights as built at `image_size`):
    what a sweep's `weights` takes where ImageNet's cannot be downloaded, so its head phases use the cache."""
    from exifray.models.registry import create_backbone

    files = {}
    for backbone in backbones:
        files[backbone] = str(Path(root) / f"{backbone}.weights.h5")
        create_backbone(backbone, image_size).save_weights(files[backbone])
    return files
