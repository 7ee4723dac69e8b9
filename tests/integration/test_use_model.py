"""Using a trained model on people's own photos: `exifray predict` and `exifray organize` on real Ray Data, with a
fusion bundle trained here on a dataset whose EXIF came from the JPEGs themselves."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from exifray import schema
from exifray.bundle import evaluate, load_model, load_split
from exifray.cli import main
from exifray.data.dataset import shard_files
from exifray.metrics import f1_scores
from exifray.organize import MANIFEST, read_manifest
from exifray.predict import predict
from exifray.testing.photos import train_bundle, write_mode_photos

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> tuple[Path, Path, Path]:
    """(photo folder, dataset, bundle): 160 labelled 200-px JPEGs with embedded EXIF, ingested at 24 and 64 px
    (so the JPEG draft target, 64, differs from the model's size, 24), a fusion model trained at 24 px."""
    return train_bundle(tmp_path_factory.mktemp("use"), photos=160, sizes=(24, 64), image_size=24, epochs=3)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_on_raw_jpegs_equals_evaluate_on_the_dataset(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    photos, dataset, bundle = trained
    loaded = load_model(bundle)
    assert loaded.decode_params().draft_target == 64 and loaded.image_size == 24
    test_ids = set()
    for path in shard_files(dataset):
        table = pq.read_table(path, columns=[schema.COL_PHOTO_ID, schema.COL_SPLIT]).to_pylist()
        test_ids |= {row[schema.COL_PHOTO_ID] for row in table if row[schema.COL_SPLIT] == "test"}
    files = [str(p) for p in sorted(photos.rglob("*.jpg")) if p.stem in test_ids]
    assert len(files) == len(test_ids) >= 8
    out = tmp_path / "tags.jsonl"
    summary = predict(str(bundle), files, str(out))
    rows = {Path(row["path"]).stem: row for row in map(json.loads, out.read_text().splitlines())}
    assert summary.predicted == len(files) and summary.errors == 0
    split = load_split(loaded, dataset, "test")
    expected = loaded.predict(loaded.inputs(split))
    got = np.array([[rows[pid]["probabilities"][c] for c in loaded.classes] for pid in split.photo_ids])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    scored = evaluate(loaded, dataset, "test")
    assert f1_scores(split.targets, got, loaded.multi_label)["f1_macro"] == pytest.approx(scored["test_f1_macro"])
    assert {row["bundle_id"] for row in rows.values()} == {loaded.bundle_id}
    assert all(row["exif_found"] for row in rows.values())


def test_predict_gives_every_photo_a_row_skips_reruns_and_leaves_sources_alone(
        trained: tuple[Path, Path, Path], fixtures: Path, tmp_path: Path) -> None:
    _, _, bundle = trained
    inbox = tmp_path / "inbox"
    write_mode_photos(inbox / "modes")
    shutil.copytree(fixtures / "jpeg", inbox / "camera")
    (inbox / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 torn download")
    before = _hashes(inbox)
    out = tmp_path / "tags.csv"
    assert main(["predict", str(bundle), str(inbox), "--out", str(out)]) == 0
    import pandas as pd

    frame = pd.read_csv(out, keep_default_na=False)
    listed = [p for p in before if Path(p).suffix.lower() in (".jpg", ".png", ".webp")]
    assert sorted(frame["path"]) == sorted(listed)
    errors = dict(zip(frame["path"], frame["error"], strict=True))
    assert errors[str(inbox / "broken.jpg")].startswith("corrupt_image")
    assert [p for p, e in errors.items() if e and "broken" not in p and "corrupted" not in p] == []
    good = frame[frame["error"] == ""]
    assert np.allclose(good[["p_indoor", "p_outdoor"]].astype(float).sum(axis=1), 1.0, atol=1e-5)
    assert set(good["tags"]) <= {"indoor", "outdoor", "indoor;outdoor", "outdoor;indoor", "Unknown"}
    assert _hashes(inbox) == before  # the sources are only read
    again = predict(str(bundle), [str(inbox)], str(out))
    assert again.predicted == len(frame) - len(good) and again.skipped == len(good)  # only the unreadable again
    assert pd.read_csv(out, keep_default_na=False).equals(frame)
    forced = predict(str(bundle), [str(inbox)], str(out), force=True)
    assert forced.predicted == len(frame) and forced.skipped == 0


def test_organize_places_reruns_dry_runs_and_undoes(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    photos, _, bundle = trained
    source = tmp_path / "mine"
    shutil.copytree(photos / "indoor", source / "a")
    write_mode_photos(source / "modes")
    (source / "b").mkdir()
    clash = sorted((source / "a").glob("*.jpg"))[0]
    shutil.copy(sorted((photos / "outdoor").glob("*.jpg"))[0], source / "b" / clash.name)  # same name, other photo
    (source / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    before = _hashes(source)
    albums = tmp_path / "albums"
    assert main(["organize", str(bundle), str(source), "--out", str(albums), "--dry-run"]) == 0
    assert not albums.exists()
    assert main(["organize", str(bundle), str(source), "--out", str(albums), "--policy", "top1"]) == 0
    rows = read_manifest(albums)
    assert len(rows) == len(before) and _hashes(source) == before
    broken = [row for row in rows if row["source"].endswith("broken.png")]
    assert broken[0]["error"].startswith("corrupt_image") and broken[0]["placed"] == []
    placed = [p for row in rows for p in row["placed"]]
    assert len(placed) == len(rows) - 1  # top1: exactly one album per readable photo
    for placement in placed:
        assert hashlib.sha256((albums / placement["path"]).read_bytes()).hexdigest() == placement["sha256"]
    names = [p["path"] for p in placed if Path(p["path"]).name.startswith(clash.stem)]
    assert len(set(names)) == len(names) == 2  # the clash got a second, hash-suffixed name
    page = (albums / "index.html").read_text()
    assert all(f"data-album='{album}'" in page for album in {p["path"].split("/")[0] for p in placed})
    assert len(list((albums / ".thumbs").glob("*.jpg"))) == len(placed)
    snapshot = {p: os.stat(p).st_mtime_ns for p in map(str, albums.rglob("*"))}
    assert main(["organize", str(bundle), str(source), "--out", str(albums), "--policy", "top1"]) == 0
    assert read_manifest(albums) == rows
    assert {p: os.stat(p).st_mtime_ns for p in map(str, albums.rglob("*")) if not p.endswith(
        ("index.html", MANIFEST))} == {p: t for p, t in snapshot.items() if not p.endswith(("index.html", MANIFEST))}
    changed = albums / placed[0]["path"]
    changed.write_bytes(changed.read_bytes() + b"user edit")
    assert main(["organize", "--undo", str(albums)]) == 0
    assert sorted(str(p) for p in albums.rglob("*") if p.is_file()) == [str(changed)]
    assert _hashes(source) == before


def test_organize_symlinks_and_undo_removes_them(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    photos, _, bundle = trained
    albums = tmp_path / "albums"
    assert main(["organize", str(bundle), str(photos / "outdoor"), "--out", str(albums), "--mode", "symlink"]) == 0
    links = [p for p in albums.rglob("*.jpg") if p.is_symlink()]
    assert len(links) >= len(list((photos / "outdoor").glob("*.jpg")))
    assert all(link.resolve().parent == (photos / "outdoor").resolve() for link in links)
    assert main(["organize", "--undo", str(albums)]) == 0
    assert not albums.exists() and len(list((photos / "outdoor").glob("*.jpg"))) == 80


def test_a_multi_label_model_carries_calibrated_thresholds_that_predict_uses(
        trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from exifray.config import IngestConfig, TrialConfig
    from exifray.data.ingest import run_ingest
    from exifray.tagging import fit_thresholds, make_policy
    from exifray.train import run_trial

    photos, _, _ = trained
    dataset, bundle = tmp_path / "multi", tmp_path / "bundle"
    run_ingest(IngestConfig(inputs=(str(photos),), out=str(dataset), sizes=(24,), label_mode="multi"))
    run_trial(TrialConfig(modality="exif", epochs=3, exif_tags=("FNumber", "ISO", "ExposureTime", "Flash")), dataset,
              out_dir=bundle)
    loaded = load_model(bundle)
    assert loaded.multi_label and loaded.thresholds is not None and len(loaded.thresholds) == 2
    val = load_split(loaded, dataset, "val")
    assert loaded.thresholds == pytest.approx(fit_thresholds(val.targets, loaded.predict(loaded.inputs(val))),
                                              abs=1e-6)  # the best-F1 threshold per class on the val split
    files = [str(p) for p in sorted(photos.rglob("*.jpg"))[:12]]
    out = tmp_path / "tags.jsonl"
    assert main(["predict", str(bundle), *files, "--out", str(out), "--threshold", "calibrated"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    probabilities = np.array([[row["probabilities"][c] for c in loaded.classes] for row in rows])
    policy = make_policy(True, threshold="calibrated", calibrated=loaded.thresholds)
    assert [row["tags"] for row in rows] == policy.tags(probabilities, loaded.classes)


def test_predict_reads_photos_and_the_bundle_from_s3_and_writes_there(trained: tuple[Path, Path, Path],
                                                                      tmp_path: Path) -> None:
    """As a user runs it: its own process and Ray, moto's S3 server named by AWS_ENDPOINT_URL."""
    import subprocess
    import sys

    import pyarrow.fs as pafs

    from exifray.testing.s3 import moto_server, s3_filesystem

    photos, _, bundle = trained
    with moto_server(tmp_path) as env:
        fs = s3_filesystem(env, "album")
        pafs.copy_files(str(bundle), "album/models/best", destination_filesystem=fs)
        pafs.copy_files(str(photos / "outdoor"), "album/inbox/outdoor", destination_filesystem=fs)
        fs.create_dir("album/inbox/notes")
        with fs.open_output_stream("album/inbox/notes/readme.txt") as stream:
            stream.write(b"not a photo, not listed")
        command = [str(Path(sys.executable).parent / "exifray"), "predict", "s3://album/models/best",
                   "s3://album/inbox/", "--out", "s3://album/tags.jsonl", "--num-cpus", "2"]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        with fs.open_input_stream("album/tags.jsonl") as stream:
            rows = [json.loads(line) for line in stream.readall().decode().splitlines()]
        assert sorted(row["path"] for row in rows) == sorted(
            f"s3://album/inbox/outdoor/{p.name}" for p in (photos / "outdoor").glob("*.jpg"))
        assert all(row["error"] is None and row["exif_found"] for row in rows)
        assert {row["bundle_id"] for row in rows} == {load_model(bundle).bundle_id}  # the same files, the same id
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert again.returncode == 0 and "0 predicted" in again.stdout and f"{len(rows)} already there" in again.stdout
