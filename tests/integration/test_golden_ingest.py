"""The golden record: ingest of a fixed input (a synthetic crawl dir plus real camera JPEGs in label folders)
reproduces, as a set, the per-photo digest that the ingest before the shared photo decoder wrote
(`tests/fixtures/golden/ingest.jsonl`: split, labels, sha256 of every image column, EXIF values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exifray.config import IngestConfig
from exifray.data.ingest import run_ingest
from exifray.testing.golden import GOLDEN_SHARD_SIZE, GOLDEN_SIZES, dataset_digest, golden_input

pytestmark = pytest.mark.integration


def test_ingest_reproduces_the_golden_record(fixtures: Path, ray_local: None, tmp_path: Path) -> None:
    crawl, folder = golden_input(tmp_path, fixtures / "jpeg")
    out = tmp_path / "dataset"
    run_ingest(IngestConfig(inputs=(str(crawl), str(folder)), out=str(out), sizes=GOLDEN_SIZES,
                            shard_size=GOLDEN_SHARD_SIZE))
    golden = [json.loads(line) for line in (fixtures / "golden" / "ingest.jsonl").read_text().splitlines()]
    digest = dataset_digest(out)
    assert len(digest) == len(golden) == 61
    assert len({row["photo_id"] for row in digest}) == len(digest)  # no photo twice
    by_id = {row["photo_id"]: row for row in golden}
    changed = [row["photo_id"] for row in digest if by_id.get(row["photo_id"]) != row]
    assert changed == [], f"{len(changed)} photos differ from the golden record, e.g. {changed[:3]}"
