"""Crash-safe file writes (temporary name in the same folder, fsync, rename), and local-or-remote locations."""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's own 0600 would hide results from other users


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[object]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def jsonable(row: dict[str, object]) -> dict[str, object]:
    """A flat record as JSON allows it: numpy scalars as numbers, NaN and infinities as null."""
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in json.loads(json.dumps(row, default=float)).items()}


@contextmanager
def staged_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a sibling staging folder; on success it replaces `target` whole, on failure it is removed,
    so a reader never sees a half-written directory."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-", dir=final.parent))
    try:
        yield staging
        if final.exists():
            retired = final.with_name(f"{TMP_PREFIX}{final.name}-old")
            shutil.rmtree(retired, ignore_errors=True)
            final.rename(retired)
            staging.rename(final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_uri(location: str | os.PathLike[str]) -> bool:
    """`s3://bucket/key`, `gs://...`, `file:///...`: a location pyarrow opens by scheme (not a plain path)."""
    return "://" in str(location)


def filesystem_and_path(location: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) of a local path or a URI such as `s3://bucket/key` (S3-compatible
    servers through AWS_ENDPOINT_URL, which `FileSystem.from_uri` honours). Raises ValueError/OSError for a
    URI pyarrow cannot open."""
    import pyarrow.fs as pafs

    text = str(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), str(Path(text).resolve())
    scheme, rest = text.split("://", 1)
    if scheme in _BUCKET_STORES:  # one client per bucket and process, not one per file
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")  # part of the key: a process may meet several servers
        return _store(f"{scheme}://{rest.split('/', 1)[0]}", endpoint), rest.rstrip("/")
    fs, path = pafs.FileSystem.from_uri(text)
    return fs, path.rstrip("/")


_BUCKET_STORES = ("s3", "gs", "gcs")


@functools.lru_cache(maxsize=16)
def _store(scheme_and_bucket: str, endpoint: str) -> pafs.FileSystem:
    """One filesystem object per bucket and process: building an S3 client per file read would cost more than
    reading a small photo."""
    import pyarrow.fs as pafs

    fs, _ = pafs.FileSystem.from_uri(scheme_and_bucket)
    return fs


def read_location(location: str, max_bytes: int | None = None) -> bytes:
    """A whole file at a local path or a URI (`s3://bucket/key`). Raises OSError (FileNotFoundError when it does
    not exist) and `TooLarge` when it holds more than `max_bytes`, before reading it."""
    if not is_uri(location):
        path = Path(location)
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            raise TooLarge(size)
        return path.read_bytes()
    fs, inside = filesystem_and_path(location)
    with fs.open_input_file(inside) as handle:
        if max_bytes is not None and (size := handle.size()) > max_bytes:
            raise TooLarge(size)
        data: bytes = handle.readall()
        return data


class TooLarge(Exception):
    """A file over the size limit its reader set (`size`: its bytes)."""

    def __init__(self, size: int):
        super().__init__(f"{size} bytes")
        self.size = size


def put_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a whole file at `path` inside `fs` so no reader sees part of it: local files by rename, object
    storage in one PUT (an object appears only once complete)."""
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        return
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def read_bytes_or_none(fs: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with fs.open_input_stream(path) as stream:
            data: bytes = stream.readall()
            return data
    except (FileNotFoundError, OSError):
        return None
