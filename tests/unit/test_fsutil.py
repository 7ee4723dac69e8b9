"""Crash-safe writes and local-or-URI locations, directly (not only through whole Ray runs)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from exifray.fsutil import (
    TMP_PREFIX,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    filesystem_and_path,
    is_uri,
    jsonable,
    staged_directory,
)


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's private 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "table.json"
    atomic_write_json(target, {"kept": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"kept": 1}
    assert not any(p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir())


def test_jsonl_rows_and_jsonable_nan(tmp_path: Path) -> None:
    atomic_write_jsonl(tmp_path / "rows.jsonl", [{"b": 1, "a": 2}, {"c": None}])
    assert (tmp_path / "rows.jsonl").read_text() == '{"a": 2, "b": 1}\n{"c": null}\n'
    assert jsonable({"x": math.nan, "y": np.float32(0.5), "z": np.int64(3), "w": math.inf}) == {
        "x": None, "y": 0.5, "z": 3, "w": None}


def test_staged_directory_replaces_the_target_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    with staged_directory(target) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), staged_directory(target) as staging:
        (staging / "a.txt").write_text("second")
        raise RuntimeError("ingest failed half-way")
    assert (target / "a.txt").read_text() == "first"
    with staged_directory(target) as staging:
        (staging / "b.txt").write_text("third")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


@pytest.mark.parametrize(("location", "uri"), [("s3://bucket/key", True), ("gs://b/k", True), ("file:///tmp/x", True),
                                               ("relative/path", False), ("/abs/path", False)])
def test_is_uri(location: str, uri: bool) -> None:
    assert is_uri(location) is uri


def test_filesystem_and_path_local_resolves_and_uri_keeps_bucket_key(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fs, path = filesystem_and_path("here/there")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "here" / "there")
    fs, path = filesystem_and_path(f"file://{tmp_path}/x/")
    assert isinstance(fs, pafs.LocalFileSystem) and path == f"{tmp_path}/x"
