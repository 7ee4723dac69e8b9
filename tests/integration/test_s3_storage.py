"""Shared storage: a sweep of a dataset on S3 with `--storage-path s3://...` against moto's S3 server on
127.0.0.1, read back by `exifray leaderboard s3://...`, `exifray export-best s3://...` and `exifray evaluate
--data s3://...`. Every command runs as a user runs it (its
own process, the endpoint in AWS_ENDPOINT_URL), so Tune's trials upload their checkpoints through pyarrow's S3
filesystem themselves."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from exifray.testing.s3 import free_port, moto_server, s3_filesystem

BIN = Path(sys.executable).parent
SPACE = """
name: shared
seed: 1
max_concurrent: 1
scheduler: none
resources: {cpus: 1}
fixed: {backbone: TestTinyCNN, epochs: 3, batch_size: 32, exif_tags: [ExposureTime, FNumber, ISO], fusion_width: 8}
params:
  modality: {grid: [image, fusion, exif]}
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server in its own process; yields the environment a user would set to reach it."""
    with moto_server(tmp_path_factory.mktemp("moto")) as env:
        yield env


def _exifray(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "exifray"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _bucket(env: dict[str, str], name: str) -> tuple[object, str]:
    return s3_filesystem(env, name), name


def _files(fs: object, root: str) -> dict[str, int]:
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))  # type: ignore[attr-defined]
    return {info.path[len(root) + 1:]: info.size for info in infos if info.type == pafs.FileType.File}


def _read(fs: object, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:  # type: ignore[attr-defined]
        return stream.readall()


def test_a_sweep_on_s3_is_read_back_by_leaderboard_and_export(s3: dict[str, str], small_dataset: Path,
                                                              tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    fs, bucket = _bucket(s3, "exifray-results")
    pafs.copy_files(str(small_dataset), f"{bucket}/dataset", destination_filesystem=fs)  # `aws s3 sync` for short
    space = tmp_path / "shared.yaml"
    space.write_text(SPACE)
    work = tmp_path / "cwd"
    work.mkdir()
    sweep = _exifray(s3, work, "sweep", "--space", str(space), "--data", f"s3://{bucket}/dataset",
                     "--storage-path", f"s3://{bucket}/experiments")
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-4000:]
    assert f"experiment:   s3://{bucket}/experiments/shared" in sweep.stdout
    assert list(work.iterdir()) == []  # nothing landed on the local disk instead

    stored = _files(fs, f"{bucket}/experiments/shared")
    for name in ("sweep.yaml", "leaderboard.csv", "optuna.journal"):
        assert stored.get(name, 0) > 0, (name, sorted(stored))
    assert any(name.startswith("experiment_state") for name in stored)
    finals = [name for name in stored if name.endswith("/metrics.json")]
    assert len(finals) == 3  # each trial's final checkpoint, uploaded by the trial itself
    for final in finals:
        folder = final.rsplit("/", 1)[0]
        assert stored[f"{folder}/model.keras"] > 0 and f"{folder}/settings.json" in stored
    board = pd.read_csv(io.BytesIO(_read(fs, f"{bucket}/experiments/shared/leaderboard.csv")))
    assert len(board) == 3 and set(board["status"]) == {"complete"}
    assert all(str(path).startswith(f"{bucket}/experiments/shared/trial_") for path in board["checkpoint"])

    # The analysis reads the experiment from S3 and writes its tables next to it there (the default --out); as
    # `--watch`, it reads the sweep's status file on S3 too, sees the sweep finished and writes the final report.
    status = json.loads(_read(fs, f"{bucket}/experiments/shared/sweep_status.json"))
    assert status["state"] == "finished" and status["heartbeat"] >= status["started"]
    analysis = _exifray(s3, work, "leaderboard", f"s3://{bucket}/experiments/shared", "--format", "csv,html",
                        "--watch", "--interval", "1")
    assert analysis.returncode == 0, (analysis.stdout + analysis.stderr)[-4000:]
    assert "the sweep finished: 3 trials finished" in analysis.stdout, analysis.stdout[-2000:]
    tables = _files(fs, f"{bucket}/experiments/shared/analysis")
    assert {"leaderboard.csv", "pareto.csv", "fusion_vs_image.csv", "report.html"} <= set(tables), sorted(tables)
    ranked = pd.read_csv(io.BytesIO(_read(fs, f"{bucket}/experiments/shared/analysis/leaderboard.csv")))
    assert sorted(ranked["trial_id"]) == sorted(board["trial_id"])
    by_trial = board.set_index("trial_id")
    for row in ranked.itertuples():
        assert row.test_f1_macro == pytest.approx(by_trial.loc[row.trial_id, "test_f1_macro"], abs=1e-12)

    bundle = tmp_path / "bundle"
    exported = _exifray(s3, work, "export-best", f"s3://{bucket}/experiments/shared", "--out", str(bundle))
    assert exported.returncode == 0, (exported.stdout + exported.stderr)[-4000:]
    manifest = json.loads((bundle / "bundle.json").read_text())
    best = board[board["trial_id"] == manifest["trial_id"]].iloc[0]
    assert json.loads((bundle / "metrics.json").read_text())["test_f1_macro"] == pytest.approx(best["test_f1_macro"])
    scored = _exifray(s3, work, "evaluate", str(bundle), "--data", f"s3://{bucket}/dataset")
    assert scored.returncode == 0, (scored.stdout + scored.stderr)[-4000:]
    assert json.loads(scored.stdout.strip().splitlines()[-1])["test_f1_macro"] == pytest.approx(best["test_f1_macro"],
                                                                                              abs=1e-9)


def test_a_missing_bucket_or_unreachable_endpoint_fails_before_the_sweep(s3: dict[str, str], small_dataset: Path,
                                                                        tmp_path: Path) -> None:
    space = tmp_path / "shared.yaml"
    space.write_text(SPACE)
    missing = _exifray(s3, tmp_path, "sweep", "--space", str(space), "--data", str(small_dataset),
                       "--storage-path", "s3://no-such-bucket/experiments")
    assert missing.returncode == 2
    assert "the bucket 'no-such-bucket' of --storage-path s3://no-such-bucket/experiments/shared does not exist" \
        in missing.stderr and s3["AWS_ENDPOINT_URL"] in missing.stderr
    closed = {**s3, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    unreachable = _exifray(closed, tmp_path, "sweep", "--space", str(space), "--data", str(small_dataset),
                           "--storage-path", "s3://exifray-results/experiments")
    assert unreachable.returncode == 2 and "cannot reach the storage of s3://exifray-results" in unreachable.stderr
    assert "Traceback" not in missing.stderr + unreachable.stderr


def test_ingest_writes_a_dataset_to_s3_and_a_rerun_switches_versions(s3: dict[str, str], fixtures: Path,
                                                                      tmp_path: Path) -> None:
    """`exifray ingest s3://.../crawl s3://.../folder --out s3://...` as a user runs it: inputs listed and read
    from S3, the dataset on S3 is the golden record, the card lists the version's shards, and a re-run publishes
    a new version and removes the old one."""
    import pyarrow.fs as pafs

    from exifray.testing.golden import GOLDEN_SHARD_SIZE, GOLDEN_SIZES, dataset_digest, golden_input

    fs, bucket = _bucket(s3, "exifray-data")
    crawl, folder = golden_input(tmp_path / "input", fixtures / "jpeg")
    (folder / "indoor" / "torn.jpg").write_bytes((fixtures / "jpeg").glob("*.jpg").__next__().read_bytes()[:900])
    pafs.copy_files(str(tmp_path / "input"), f"{bucket}/input", destination_filesystem=fs)
    inputs = (f"s3://{bucket}/input/{crawl.name}", f"s3://{bucket}/input/{folder.name}")
    command = ("ingest", *inputs, "--out", f"s3://{bucket}/dataset", "--sizes",
               ",".join(map(str, GOLDEN_SIZES)), "--shard-size", str(GOLDEN_SHARD_SIZE), "--num-cpus", "2")
    first = _exifray(s3, tmp_path, *command)
    assert first.returncode == 0, first.stderr[-3000:]

    def versions() -> list[str]:
        infos = fs.get_file_info(pafs.FileSelector(f"{bucket}/dataset/versions"))  # type: ignore[attr-defined]
        return sorted(Path(info.path).name for info in infos)

    local = tmp_path / "copy"
    pafs.copy_files(f"{bucket}/dataset", str(local), source_filesystem=fs)
    golden = [json.loads(line) for line in (fixtures / "golden" / "ingest.jsonl").read_text().splitlines()]
    assert dataset_digest(local) == golden
    card = json.loads((local / "dataset.json").read_text())
    assert [entry["path"] for entry in card["inputs"]] == list(inputs)
    quarantined = [json.loads(line) for line in (local / "quarantine.jsonl").read_text().splitlines()]
    assert [(row["reason"], row["path"]) for row in quarantined] == [
        ("corrupt_image", f"s3://{bucket}/input/folder/indoor/torn.jpg")]  # named where it was read from
    (version,) = versions()
    assert {shard["path"].split("/")[1] for shard in card["shards"]} == {version}
    again = _exifray(s3, tmp_path, *command)
    assert again.returncode == 0, again.stderr[-3000:]
    (newer,) = versions()
    assert newer != version and newer > version  # the card switched to the new version; the old one is gone
