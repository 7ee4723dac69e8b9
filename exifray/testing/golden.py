"""The golden record of ingest: a fixed input and a digest per photo of what ingest made of it.

    crawl, folder = golden_input(tmp, camera_jpegs=Path("tests/fixtures/jpeg"))
    rows = dataset_digest("out/dataset")       # one dict per photo, sorted by photo id

The input is a synthetic crawl dir (Flickr getExif JSON beside each JPEG) plus a label-folder layout of real
camera JPEGs (EXIF embedded, a few broken). A digest row holds the photo id, split, labels, the sha256 of every
image column and the EXIF values, so any change in decoding, splitting, labelling or EXIF parsing shows up.
`tests/fixtures/golden/ingest.jsonl` was written by the ingest that predates the shared photo decoder
(commit 4f98cfb); every later ingest must reproduce it as a set.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path
from typing import Any

GOLDEN_SIZES = (32, 64)
GOLDEN_SHARD_SIZE = 16


def golden_input(root: str | Path, camera_jpegs: str | Path) -> tuple[Path, Path]:
    """(a synthetic crawl dir of 48 photos at 96 px, a label-folder tree of the camera JPEGs split over the
    crawl's two classes by name order)."""
    from exifray.testing.datasets import make_crawl

    crawl = make_crawl(root, photos=48, seed=11, image_size=96)
    folder = Path(root) / "folder"
    jpegs = sorted(Path(camera_jpegs).glob("*.jpg"))
    for index, path in enumerate(jpegs):
        label = ("indoor", "outdoor")[index % 2]
        (folder / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / label / path.name)
    return crawl, folder


def _value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def dataset_digest(dataset_dir: str | Path) -> list[dict[str, object]]:
    """One row per photo of a DATASET DIR (every shard file its card lists), sorted by photo id."""
    import pyarrow.parquet as pq

    from exifray import schema
    from exifray.data.card import read_card

    card = read_card(dataset_dir)
    paths = [Path(dataset_dir) / shard.path for shard in card.shards] or sorted(
        (Path(dataset_dir) / schema.SHARDS_DIR).glob("*.parquet"))  # the manifest, or a card from before it
    rows = []
    for path in paths:
        for record in pq.read_table(path).to_pylist():
            row: dict[str, Any] = {"photo_id": record[schema.COL_PHOTO_ID], "split": record[schema.COL_SPLIT],
                                   "labels": sorted(record[schema.COL_LABELS])}
            for key, value in sorted(record.items()):
                if key.startswith("image_"):
                    row[key] = hashlib.sha256(value).hexdigest()
                elif key.startswith("exif_"):
                    row[key] = _value(value)
            rows.append(row)
    return sorted(rows, key=lambda row: row["photo_id"])
