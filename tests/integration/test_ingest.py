from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from exifray import schema
from exifray.config import IngestConfig
from exifray.crawl.records import CrawlDir, PhotoRecord
from exifray.data.dataset import load_arrays, shard_files
from exifray.data.ingest import run_ingest
from exifray.data.synth import SynthConfig, generate
from exifray.errors import DataError
from exifray.exif.encode import ExifEncoder
from exifray.exif.tags import TAG_NAMES

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _bomb(jpeg: bytes) -> bytes:
    """A valid JPEG whose frame header claims 60000 x 60000 pixels."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + (60000).to_bytes(2, "big") * 2 + jpeg[sof + 9:]


@pytest.fixture(scope="module")
def dirty_crawl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[PhotoRecord]]:
    """A synthetic crawl dir plus one bad record of every kind, and a second crawl dir re-labelling a photo."""
    root = tmp_path_factory.mktemp("dirty")
    good = generate(root / "a", SynthConfig(photos=40, seed=5, image_size=48))
    crawl = CrawlDir(root / "a")
    sample_jpeg = (root / "a" / good[0].image).read_bytes()
    sample_exif = json.loads((root / "a" / good[0].exif).read_text())
    bad = {
        "1001": (b"", sample_exif), "1002": (sample_jpeg[: len(sample_jpeg) // 3], sample_exif),
        "1003": (b"<html><body>503 Service Unavailable</body></html>", sample_exif),
        "1004": (_bomb(sample_jpeg), sample_exif),
        "1005": (sample_jpeg, json.loads((FIXTURES / "flickr" / "fail.flickrex.json").read_text())),
        "1006": (sample_jpeg, None), "1007": (sample_jpeg, None),
    }
    records = list(good)
    for photo_id, (jpeg, body) in bad.items():
        image = crawl.write_image(f"{photo_id}_abc_1_q.jpg", jpeg)
        exif = crawl.write_exif(photo_id, body) if body is not None else f"exif/{photo_id}.json"
        records.append(PhotoRecord(photo_id, "abc", "1", ["indoor", "kitchen"], "synth", image, exif))
    (root / "a" / "exif" / "1006.json").write_text('{"photo": {"exif": [')  # broken JSON; 1007 has no file
    crawl.write_records(records)
    with crawl.photos_path.open("a") as handle:
        handle.write('{"id": "1008", "secret": "ab')  # a torn last line, as after a crash
    other = CrawlDir(root / "b")  # the same photo again under another sub-concept: labels merge
    twin = good[1]
    image = other.write_image(Path(twin.image).name, (root / "a" / twin.image).read_bytes())
    exif = other.write_exif(twin.id, json.loads((root / "a" / twin.exif).read_text()))
    sub = "office" if twin.labels[1] != "office" else "kitchen"
    other.write_records([PhotoRecord(twin.id, twin.secret, twin.server, [twin.labels[0], sub], "photos", image, exif)])
    return root / "a", root / "b", good


@pytest.fixture(scope="module")
def ingested(dirty_crawl: tuple[Path, Path, list[PhotoRecord]], ray_local: None,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    a, b, _ = dirty_crawl
    out = tmp_path_factory.mktemp("out") / "dataset"
    summary = run_ingest(IngestConfig(inputs=(str(a), str(b)), out=str(out), sizes=(16, 32), shard_size=16,
                                      max_pixels=10_000_000))
    return out, summary


def _quarantine(out: Path) -> dict[str | None, str]:
    rows = [json.loads(line) for line in (out / schema.QUARANTINE_FILE).read_text().splitlines()]
    return {row["photo_id"]: row["reason"] for row in rows}


def test_every_bad_record_is_quarantined_with_its_reason(ingested: tuple[Path, object]) -> None:
    out, summary = ingested
    assert _quarantine(out) == {"1001": "empty_file", "1002": "corrupt_image", "1003": "not_an_image",
                                "1004": "decompression_bomb", "1005": "bad_exif", "1006": "bad_exif",
                                "1007": "missing_exif", None: "bad_record"}
    assert summary.quarantined == 8 and summary.by_reason["bad_exif"] == 2  # type: ignore[attr-defined]


def test_every_good_record_is_kept_once_with_merged_labels(ingested: tuple[Path, object],
                                                           dirty_crawl: tuple[Path, Path, list[PhotoRecord]]) -> None:
    out, summary = ingested
    good = dirty_crawl[2]
    table = pq.ParquetDataset(shard_files(out)).read()
    assert sorted(table[schema.COL_PHOTO_ID].to_pylist()) == sorted(r.id for r in good)
    assert summary.merged_duplicates == 1 and summary.photos == 40  # type: ignore[attr-defined]
    card = json.loads((out / schema.DATASET_CARD).read_text())
    assert card["label_mode"] == "single" and card["classes"] == ["indoor", "outdoor"]
    assert sum(card["splits"]["sizes"].values()) == 40 == sum(sum(c.values()) for c in card["counts"].values())
    assert set(table.column_names) >= {"image_16", "image_32", *(f"exif_{t}" for t in TAG_NAMES)}


def test_sub_level_ingest_turns_merged_labels_into_multi_label(dirty_crawl: tuple[Path, Path, list[PhotoRecord]],
                                                                ray_local: None, tmp_path: Path) -> None:
    a, b, good = dirty_crawl
    run_ingest(IngestConfig(inputs=(str(a), str(b)), out=str(tmp_path / "sub"), sizes=(16,), label_level="sub"))
    card = json.loads((tmp_path / "sub" / schema.DATASET_CARD).read_text())
    assert card["label_mode"] == "multi" and "indoor/kitchen" in card["classes"]
    arrays = load_arrays(tmp_path / "sub", 16)
    per_photo = np.concatenate([s.targets.sum(axis=1) for s in (arrays.train, arrays.val, arrays.test)])
    assert sorted(per_photo.tolist()).count(2.0) == 1


def test_encoder_is_fitted_on_the_train_split_only(ingested: tuple[Path, object]) -> None:
    out, _ = ingested
    arrays = load_arrays(out, None)
    expected = ExifEncoder.fit(arrays.train.exif_columns())
    assert arrays.encoder.to_dict() == expected.to_dict()
    everything = {tag: np.concatenate([s.exif_columns()[tag] for s in (arrays.train, arrays.val, arrays.test)])
                  for tag in TAG_NAMES}
    assert ExifEncoder.fit(everything).stats["ISO"]["mean"] != arrays.encoder.stats["ISO"]["mean"]


def test_images_are_decoded_upright_at_each_size(ingested: tuple[Path, object],
                                                 dirty_crawl: tuple[Path, Path, list[PhotoRecord]]) -> None:
    from PIL import Image, ImageOps

    out, _ = ingested
    arrays = load_arrays(out, 32)
    split = arrays.train
    photo_id = split.photo_ids[0]
    record = next(r for r in dirty_crawl[2] if r.id == photo_id)
    expected = ImageOps.exif_transpose(Image.open(dirty_crawl[0] / record.image)).convert("RGB").resize((32, 32))
    difference = np.abs(split.images[0].astype(int) - np.asarray(expected).astype(int)).mean()
    assert split.images.shape[1:] == (32, 32, 3) and difference < 12


def test_reingest_gives_the_same_dataset_and_leaves_no_staging(
        ingested: tuple[Path, object], dirty_crawl: tuple[Path, Path, list[PhotoRecord]]) -> None:
    out, _ = ingested
    first = pq.ParquetDataset(shard_files(out)).read()
    card_before = json.loads((out / schema.DATASET_CARD).read_text())
    run_ingest(IngestConfig(inputs=(str(dirty_crawl[0]), str(dirty_crawl[1])), out=str(out), sizes=(16, 32),
                            shard_size=16, max_pixels=10_000_000))
    second = pq.ParquetDataset(shard_files(out)).read()
    assert first.equals(second)
    card_after = json.loads((out / schema.DATASET_CARD).read_text())
    # A new version was written beside the old one, the card switched to it, and the old version removed.
    assert [s["path"] for s in card_after["shards"]] != [s["path"] for s in card_before["shards"]]
    assert [Path(p).relative_to(out).parts[:2] for p in shard_files(out)] == \
        [("versions", card_after["shards"][0]["path"].split("/")[1])] * len(card_after["shards"])
    assert [p.name for p in (out / "versions").iterdir()] == [card_after["shards"][0]["path"].split("/")[1]]
    for key in ("shards",):
        card_before.pop(key), card_after.pop(key)
    assert card_after == card_before  # the same dataset, dataset_id included
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


def test_card_carries_a_content_identity_and_a_manifest_that_readers_follow(ingested: tuple[Path, object],
                                                                            tmp_path: Path) -> None:
    import hashlib
    import shutil

    from exifray.data.card import DatasetCard, ShardFile, dataset_id, read_card
    from exifray.data.dataset import load_arrays

    out, _ = ingested
    card = read_card(out)
    assert isinstance(card, DatasetCard) and card.version == 2
    files = [Path(p) for p in shard_files(out)]
    assert [s.path for s in card.shards] == [p.relative_to(out).as_posix() for p in files]
    assert all(re.fullmatch(r"versions/\d{8}T\d{12}-[0-9a-f]{12}/shards/part-\d{5}\.parquet", s.path)
               for s in card.shards)
    for shard, path in zip(card.shards, files, strict=True):
        assert shard.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and shard.bytes == path.stat().st_size
    assert sum(s.rows for s in card.shards) == card.photos
    assert card.dataset_id == dataset_id(card.shards) and len(card.dataset_id) == 64
    assert card.dataset_id != dataset_id([ShardFile(s.path, s.rows, s.bytes, "0" * 64) for s in card.shards])
    assert card.resolve_image_size(None) == 16 and card.resolve_image_size(32) == 32
    # A file the manifest does not list is not part of the dataset.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.copy(files[0], copy / Path(card.shards[0].path).parent / "part-99999.parquet")
    arrays = load_arrays(copy, 16)
    assert len(arrays.train) + len(arrays.val) + len(arrays.test) == card.photos


def test_splits_are_stable_when_photos_are_added(dirty_crawl: tuple[Path, Path, list[PhotoRecord]],
                                                 ray_local: None, tmp_path: Path) -> None:
    a, _, _ = dirty_crawl
    run_ingest(IngestConfig(inputs=(str(a),), out=str(tmp_path / "one"), sizes=(16,)))
    more = generate(tmp_path / "more", SynthConfig(photos=10, seed=99, image_size=48))
    run_ingest(IngestConfig(inputs=(str(a), str(tmp_path / "more")), out=str(tmp_path / "two"), sizes=(16,)))

    def splits(path: Path) -> dict[str, str]:
        table = pq.ParquetDataset(shard_files(path)).read()
        return dict(zip(table[schema.COL_PHOTO_ID].to_pylist(), table[schema.COL_SPLIT].to_pylist(), strict=True))

    one, two = splits(tmp_path / "one"), splits(tmp_path / "two")
    assert all(two[photo_id] == split for photo_id, split in one.items())
    assert len(two) == len(one) + len(more)


def test_a_failed_ingest_keeps_the_previous_dataset(ingested: tuple[Path, object], tmp_path: Path) -> None:
    out, _ = ingested
    before = (out / schema.DATASET_CARD).read_bytes()
    crawl = CrawlDir(tmp_path / "all-bad")  # every photo fails while the new dataset is being staged
    crawl.write_records([PhotoRecord("5", "ab", "1", ["indoor"], "synth", crawl.write_image("5_ab_1.jpg", b""), None)])
    with pytest.raises(DataError, match="no photo could be ingested"):
        run_ingest(IngestConfig(inputs=(str(tmp_path / "all-bad"),), out=str(out), sizes=(16,)))
    assert (out / schema.DATASET_CARD).read_bytes() == before


def test_thesis_and_folder_layouts(dirty_crawl: tuple[Path, Path, list[PhotoRecord]], ray_local: None,
                                   tmp_path: Path) -> None:
    a, _, good = dirty_crawl
    for record in good[:12]:
        key = ",".join(record.labels)
        for kind, source in (("images", record.image), ("exif", record.exif)):
            target = tmp_path / "thesis" / key / kind
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(a / source, target / Path(source).name)
        folder = tmp_path / "folder" / record.labels[0]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(a / record.image, folder / Path(record.image).name)
    orphan = tmp_path / "thesis" / "indoor,kitchen" / "images" / "777_ab_1.jpg"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(a / good[0].image, orphan)
    run_ingest(IngestConfig(inputs=(str(tmp_path / "thesis"),), out=str(tmp_path / "t"), sizes=(16,),
                            label_level="sub"))
    run_ingest(IngestConfig(inputs=(str(tmp_path / "folder"),), out=str(tmp_path / "f"), sizes=(16,)))
    thesis_card = json.loads((tmp_path / "t" / schema.DATASET_CARD).read_text())
    folder_card = json.loads((tmp_path / "f" / schema.DATASET_CARD).read_text())
    assert thesis_card["inputs"][0]["format"] == "thesis" and thesis_card["photos"] == 12
    assert _quarantine(tmp_path / "t") == {"777": "image_without_exif"}
    assert folder_card["inputs"][0]["format"] == "folder" and folder_card["photos"] == 12
    thesis, folder = load_arrays(tmp_path / "t", None), load_arrays(tmp_path / "f", None)
    assert np.allclose(np.nan_to_num(np.sort(thesis.train.exif_raw, axis=0), nan=-1),
                       np.nan_to_num(np.sort(folder.train.exif_raw, axis=0), nan=-1), rtol=1e-3)


def test_mirflickr_layout(dirty_crawl: tuple[Path, Path, list[PhotoRecord]], ray_local: None, tmp_path: Path) -> None:
    a, _, good = dirty_crawl
    root = tmp_path / "mirflickr25k"
    (root / "mirflickr").mkdir(parents=True)
    (root / "meta" / "exif_raw").mkdir(parents=True)
    (root / "annotations").mkdir()
    for number, record in enumerate(good[:10], start=1):
        shutil.copy(a / record.image, root / "mirflickr" / f"im{number}.jpg")
        if number != 10:  # the last image has no EXIF file
            (root / "meta" / "exif_raw" / f"exif{number}.txt").write_text("-ISO Speed\n400\n-Aperture\nf/2.8\n")
    (root / "annotations" / "indoor.txt").write_text("1\n2\n3\n4\n5\n10\n")
    (root / "annotations" / "night.txt").write_text("2\n6\n7\n8\n9\n")
    (root / "annotations" / "indoor_r1.txt").write_text("1\n")
    run_ingest(IngestConfig(inputs=(str(root),), out=str(tmp_path / "m"), sizes=(16,)))
    card = json.loads((tmp_path / "m" / schema.DATASET_CARD).read_text())
    assert card["inputs"][0]["format"] == "mirflickr" and card["photos"] == 9
    assert card["label_mode"] == "multi" and card["classes"] == ["indoor", "night"]
    assert _quarantine(tmp_path / "m") == {"10": "image_without_exif"}
    arrays = load_arrays(tmp_path / "m", None)
    iso = np.concatenate([s.exif_columns()["ISO"] for s in (arrays.train, arrays.val, arrays.test)])
    assert set(iso.tolist()) == {400.0}
