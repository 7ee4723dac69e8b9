"""Raw EXIF → typed values, from the three places EXIF comes from.

- Flickr `flickr.photos.getExif` JSON: `photo.exif[].tag` with `raw._content`, a string *or* a number.
- MIRFLICKR-25k `exif{N}.txt`: alternating `-Tag Name` / value lines.
- EXIF embedded in a JPEG, read with Pillow (IFD0 plus the Exif sub-IFD, rationals resolved).

A single unreadable value becomes missing and is listed in `ExifReading.unparsed`; only a source that
cannot be read at all (broken JSON, a `stat: fail` body, a file that is not a JPEG) raises ExifParseError.

    exifray exif tests/fixtures/jpeg/*.jpg     # one JSON line per file
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from exifray.errors import ExifParseError
from exifray.exif.tags import TAG_NAMES, TagSpec, TypedValue, lookup

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class ExifReading:
    """Typed values of the catalogue tags found in one source, plus what could not be parsed."""

    tags: dict[str, TypedValue] = field(default_factory=dict)
    unparsed: dict[str, str] = field(default_factory=dict)  # canonical tag → why its value was dropped

    def add(self, spec: TagSpec, raw: object, *, from_jpeg: bool = False) -> None:
        if spec.name in self.tags:  # the first occurrence wins (ExifIFD before XMP duplicates)
            return
        try:
            value = spec.parse(raw)
            if from_jpeg and spec.from_jpeg is not None and not isinstance(value, bool):
                value = spec.from_jpeg(float(value))
        except (ValueError, TypeError, OverflowError, ZeroDivisionError) as exc:
            self.unparsed[spec.name] = str(exc)
            return
        self.unparsed.pop(spec.name, None)
        self.tags[spec.name] = value

    def as_floats(self, tags: Iterable[str] = TAG_NAMES) -> dict[str, float | None]:
        """One float (or None when missing) per tag: the raw-column form stored in Parquet."""
        return {tag: (float(self.tags[tag]) if tag in self.tags else None) for tag in tags}


# --- Flickr getExif ---------------------------------------------------------------------------

def read_flickr_exif(body: Mapping[str, object] | str | bytes) -> ExifReading:
    """Parse a `flickr.photos.getExif` response body (dict, JSON text or bytes)."""
    data = _load_json(body)
    if data.get("stat") == "fail":
        raise ExifParseError(f"getExif answered stat=fail (code {data.get('code')}: {data.get('message')!r})")
    photo = data.get("photo")
    entries = photo.get("exif") if isinstance(photo, dict) else None
    if not isinstance(entries, list):
        raise ExifParseError("not a getExif body: no photo.exif list")
    reading = ExifReading()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("tag"), str):
            continue
        spec = lookup(entry["tag"])
        if spec is None:
            continue
        raw = entry.get("raw")
        reading.add(spec, raw.get("_content") if isinstance(raw, dict) else raw)
    return reading


def _load_json(body: Mapping[str, object] | str | bytes) -> Mapping[str, object]:
    if isinstance(body, Mapping):
        return body
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExifParseError(f"broken JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ExifParseError(f"expected a JSON object, got {type(data).__name__}")
    return data


# --- MIRFLICKR exif{N}.txt --------------------------------------------------------------------

def read_mirflickr_exif(text: str | bytes) -> ExifReading:
    """Parse MIRFLICKR's strictly alternating `-Tag Name` / value lines; unknown tags are skipped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    reading = ExifReading()
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("-"):  # out of step (a stray line): resynchronise on the next tag line
            index += 1
            continue
        value = lines[index + 1] if index + 1 < len(lines) else ""  # values may start with "-" (-2/3 EV)
        spec = lookup(line[1:])
        if spec is not None:
            reading.add(spec, value)
        index += 2
    return reading


# --- JPEG embedded EXIF (Pillow) --------------------------------------------------------------

def read_jpeg_exif(source: bytes | str | os.PathLike[str]) -> ExifReading:
    """Parse the EXIF embedded in a JPEG. A JPEG without EXIF gives an empty reading; a file that is
    not a JPEG, or whose EXIF block is broken, raises ExifParseError."""
    from PIL import Image, UnidentifiedImageError

    data = Path(source).read_bytes() if not isinstance(source, bytes) else source
    if not data.startswith(b"\xff\xd8"):
        raise ExifParseError("not a JPEG (no SOI marker)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return read_image_exif(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise ExifParseError(f"broken JPEG/EXIF block: {type(exc).__name__}: {exc}") from exc


def read_image_exif(image: Image.Image) -> ExifReading:
    """The EXIF of an image Pillow has opened (JPEG, PNG's eXIf chunk, WebP, HEIC with `exifray[heic]`): IFD0
    plus the Exif sub-IFD, rationals resolved. No EXIF gives an empty reading; a broken block raises
    ExifParseError."""
    from PIL import ExifTags

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd tags; we report per value instead
            exif = image.getexif()
            entries = dict(exif.items())
            entries.update(exif.get_ifd(ExifTags.IFD.Exif).items())
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error) as exc:
        raise ExifParseError(f"broken JPEG/EXIF block: {type(exc).__name__}: {exc}") from exc
    reading = ExifReading()
    for tag_id, raw in entries.items():
        name = ExifTags.TAGS.get(tag_id)
        spec = lookup(name) if name else None
        if spec is None:
            continue
        if isinstance(raw, tuple | list):  # ISOSpeedRatings may be a sequence; the first is the ISO
            raw = raw[0] if raw else None
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", errors="replace").strip("\x00 ")
        reading.add(spec, raw, from_jpeg=True)
    return reading


# --- files and folders (`exifray exif PATH...`) ------------------------------------------------

def read_exif_file(path: str | os.PathLike[str]) -> ExifReading:
    """Dispatch on content: a JPEG, a Flickr getExif JSON body or a MIRFLICKR txt file."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xff\xd8"):
        return read_jpeg_exif(data)
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        return read_flickr_exif(data)
    if stripped.startswith(b"-"):
        return read_mirflickr_exif(data)
    if not data:
        raise ExifParseError("empty file")
    raise ExifParseError("neither a JPEG, a Flickr getExif JSON body nor a MIRFLICKR exif txt")


EXIF_SUFFIXES = (".jpg", ".jpeg", ".json")


def _is_exif_file(path: Path) -> bool:
    """In folders: JPEGs, getExif JSON bodies and MIRFLICKR `exif{N}.txt` (not every text file)."""
    name = path.name.lower()
    return path.suffix.lower() in EXIF_SUFFIXES or (name.startswith("exif") and name.endswith(".txt"))


def iter_exif_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterable[Path]:
    """Files as given, and the EXIF-bearing files inside folders (sorted, recursive)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and _is_exif_file(p))
        else:
            yield path


def exif_report_line(path: Path) -> dict[str, object]:
    """The `exifray exif` JSON line for one file; errors are reported, never raised."""
    try:
        reading = read_exif_file(path)
    except FileNotFoundError:
        return {"path": str(path), "tags": {}, "error": "no such file"}
    except (ExifParseError, OSError) as exc:
        return {"path": str(path), "tags": {}, "error": str(exc)}
    line: dict[str, object] = {"path": str(path), "tags": reading.tags, "error": None}
    if reading.unparsed:
        line["unparsed"] = reading.unparsed
    return line
