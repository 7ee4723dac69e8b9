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


def test_an_interrupted_ingest_resumes_its_version_and_a_cardless_one_is_refused(
        fixtures: Path, ray_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from exifray.cli import main
    from exifray.data.card import read_card

    crawl, folder = golden_input(tmp_path, fixtures / "jpeg")
    out = tmp_path / "dataset"
    config = IngestConfig(inputs=(str(crawl), str(folder)), out=str(out), sizes=GOLDEN_SIZES,
                          shard_size=GOLDEN_SHARD_SIZE)
    run_ingest(config)
    card = read_card(out)
    # As if the ingest had been killed after three of its four shards: no card yet, the last shard unwritten.
    (out / "dataset.json").unlink()
    last = out / card.shards[-1].path
    last.unlink()
    last.with_name(last.name.replace(".parquet", ".summary.json")).unlink()
    kept = {shard.path: os.stat(out / shard.path).st_mtime_ns for shard in card.shards[:-1]}
    capsys.readouterr()
    assert main(["sweep", "--space", "search_spaces/demo.yaml", "--data", str(out), "--smoke-test",
                 "--storage-path", str(tmp_path / "experiments")]) != 0
    refused = capsys.readouterr().err
    assert f"not a dataset dir (no dataset.json): {out}" in refused, refused  # read nothing of the partial one
    run_ingest(config)  # the same input and settings: the unfinished version is continued
    again = read_card(out)
    assert [s.path for s in again.shards] == [s.path for s in card.shards] and again.dataset_id == card.dataset_id
    assert {path: os.stat(out / path).st_mtime_ns for path in kept} == kept  # written shards were skipped
    golden = [json.loads(line) for line in (fixtures / "golden" / "ingest.jsonl").read_text().splitlines()]
    assert dataset_digest(out) == golden
