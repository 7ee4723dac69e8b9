"""The CRAWL DIR contract: `images/`, `exif/{id}.json` and `photos.jsonl` (DESIGN.md).

Written by `exifray crawl` and `exifray synth`, read by `exifray ingest`. No aiohttp here, so the
format can be read and written anywhere.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from exifray import schema
from exifray.errors import DataError
from exifray.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_jsonl

logger = logging.getLogger(__name__)

_ID_RE = re.compile(r"^\d{1,20}$")
_SECRET_RE = re.compile(r"^[0-9a-f]{1,32}$")
_SERVER_RE = re.compile(r"^\d{1,10}$")
SOURCES = ("group", "search", "photos", "synth")


def is_valid_photo_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def validate_photo_ref(photo_id: str, secret: str, server: str) -> None:
    """Ids, secrets and servers become URLs and file names: only digits / lowercase hex pass."""
    for name, value, pattern in (("id", photo_id, _ID_RE), ("secret", secret, _SECRET_RE),
                                 ("server", server, _SERVER_RE)):
        if not isinstance(value, str) or not pattern.match(value):
            raise DataError(f"unsafe photo {name} {value!r}: expected {pattern.pattern}")


def image_filename(photo_id: str, secret: str, server: str, size: str) -> str:
    validate_photo_ref(photo_id, secret, server)
    suffix = f"_{size}" if size else ""
    return f"{photo_id}_{secret}_{server}{suffix}.jpg"


def photo_id_from_filename(name: str) -> str:
    """Only the part before the first `_` is the photo id (all thesis naming variants agree)."""
    return Path(name).stem.split("_", 1)[0]


@dataclass(frozen=True)
class PhotoRecord:
    id: str
    secret: str
    server: str
    labels: list[str]
    source: str
    image: str  # relative to the crawl dir
    exif: str | None  # relative to the crawl dir; None when the crawl did not fetch EXIF
    license: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        row = asdict(self)
        if not row["extra"]:
            row.pop("extra")
        return row

    @classmethod
    def from_json(cls, row: dict[str, object]) -> PhotoRecord:
        labels = row.get("labels") or []
        if not isinstance(labels, list):
            raise DataError(f"labels must be a list, got {labels!r}")
        extra = row.get("extra") or {}
        if not isinstance(extra, dict):
            raise DataError(f"extra must be an object, got {extra!r}")
        return cls(id=str(row["id"]), secret=str(row.get("secret", "")), server=str(row.get("server", "")),
                   labels=[str(label) for label in labels], source=str(row.get("source", "")),
                   image=str(row["image"]), exif=(str(row["exif"]) if row.get("exif") else None),
                   license=(str(row["license"]) if row.get("license") is not None else None),
                   extra=dict(extra))


def labels_from_concept_key(key: str) -> list[str]:
    """The thesis metadata key `"moving,boat"` → `["moving", "boat"]` (super first, then sub)."""
    return [part.strip() for part in key.split(",") if part.strip()]


class CrawlDir:
    """Reader and writer of one CRAWL DIR."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def photos_path(self) -> Path:
        return self.root / schema.PHOTOS_FILE

    def image_path(self, filename: str) -> Path:
        return self.root / schema.IMAGES_DIR / filename

    def exif_path(self, photo_id: str) -> Path:
        if not is_valid_photo_id(photo_id):
            raise DataError(f"unsafe photo id {photo_id!r}")
        return self.root / schema.EXIF_DIR / f"{photo_id}.json"

    def write_image(self, filename: str, data: bytes) -> str:
        atomic_write_bytes(self.image_path(filename), data)
        return f"{schema.IMAGES_DIR}/{filename}"

    def write_exif(self, photo_id: str, body: dict[str, object]) -> str:
        atomic_write_json(self.exif_path(photo_id), body)
        return f"{schema.EXIF_DIR}/{photo_id}.json"

    def write_records(self, records: list[PhotoRecord]) -> None:
        atomic_write_jsonl(self.photos_path, (record.to_json() for record in records))

    def append_record(self, record: PhotoRecord) -> None:
        """Append one complete photo (its files are already renamed into place)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.photos_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
            handle.flush()

    def iter_records(self) -> Iterator[tuple[int, PhotoRecord | None, str | None]]:
        """(line number, record, problem) per line; a torn last line after a crash is a problem, not a crash."""
        if not self.photos_path.exists():
            raise DataError(f"not a crawl dir: {self.photos_path} is missing")
        with self.photos_path.open(encoding="utf-8") as handle:
            yield from parse_record_lines(handle)


def parse_record_lines(lines: Iterable[str]) -> Iterator[tuple[int, PhotoRecord | None, str | None]]:
    """`photos.jsonl` lines → (line number, record, problem); a torn or malformed line is a problem."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, PhotoRecord.from_json(json.loads(line)), None
        except (json.JSONDecodeError, KeyError, TypeError, DataError) as exc:
            yield number, None, f"photos.jsonl line {number}: {type(exc).__name__}: {exc}"
