"""Helpers for the Ray job entrypoints in `jobs/`: their `--smoke-test` inputs (made on the spot, no network)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from exifray.testing.datasets import make_crawl, make_dataset


def option(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv, if given."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def smoke_arguments(argv: list[str], job: str) -> Path:
    """The folder a smoke test writes to: `--out DIR`, or a new temporary folder (kept)."""
    out = option(argv, "--out")
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix=f"exifray-{job}-smoke-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def smoke_crawl(out: Path, photos: int = 120) -> Path:
    """`out/crawl`: a small synthetic indoor/outdoor crawl dir."""
    return make_crawl(out, photos=photos, seed=0, image_size=48)


def smoke_dataset(out: Path, photos: int = 120) -> Path:
    """`out/dataset`: a small synthetic indoor/outdoor DATASET DIR at 32 px (ingested on the current Ray cluster)."""
    return make_dataset(out, photos=photos, seed=0, image_size=48, sizes=(32,), shard_size=64)
