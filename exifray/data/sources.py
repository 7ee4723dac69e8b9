"""Listing photos from the inputs ingest understands, without decoding anything.

- `crawl`: a CRAWL DIR (`photos.jsonl`, `images/`, `exif/`), as written by `exifray crawl|synth`.
- `thesis`: the thesis layout `ROOT/{label-set}/{images,exif}/`, label-set folders named by the
  concept key (`indoor,kitchen`), EXIF files `{id}.json` holding getExif bodies.
- `mirflickr`: MIRFLICKR-25k: `im{N}.jpg`, `meta/exif_raw/exif{N}.txt` (or `exif/`), and per-concept
  annotation lists `{concept}.txt` (one image number per line; `*_r1.txt` relevance lists are ignored).
- `folder`: `ROOT/{label}/*.jpg` or `ROOT/{super}/{sub}/*.jpg`; EXIF is read from the JPEGs.

Each source yields `SourceRecord`s (what to decode) and `Rejection`s (what cannot become a record:
an image without its EXIF file, an EXIF file without an image, a torn `photos.jsonl` line).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exifray import schema
from exifray.crawl.records import CrawlDir, is_valid_photo_id, labels_from_concept_key, photo_id_from_filename
from exifray.errors import ConfigError, DataError, InputNotFoundError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif")
EXIF_FLICKR_JSON, EXIF_MIRFLICKR_TXT, EXIF_EMBEDDED = "flickr_json", "mirflickr_txt", "embedded"


@dataclass(frozen=True)
class SourceRecord:
    photo_id: str
    concepts: frozenset[tuple[str, str | None]]  # (super, sub) pairs; sub is None for flat labels
    image_path: str
    exif_kind: str
    exif_path: str | None
    origin: str  # "format:root", for the quarantine and the card


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str
    origin: str
    photo_id: str | None = None
    path: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"photo_id": self.photo_id, "reason": self.reason, "detail": self.detail, "path": self.path,
                "origin": self.origin}


@dataclass
class Listing:
    records: list[SourceRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def concepts_from_labels(labels: list[str]) -> frozenset[tuple[str, str | None]]:
    """`["indoor", "kitchen"]` → {("indoor", "kitchen")}; `["dog"]` → {("dog", None)}. The first label is
    the super-concept and later ones its sub-concepts (the thesis' `"super,sub"` keys)."""
    if not labels:
        return frozenset()
    if len(labels) == 1:
        return frozenset({(labels[0], None)})
    return frozenset((labels[0], sub) for sub in labels[1:])


def detect_format(root: Path) -> str:
    if (root / schema.PHOTOS_FILE).is_file():
        return "crawl"
    children = [child for child in root.iterdir() if child.is_dir()]
    if any((child / "images").is_dir() for child in children):
        return "thesis"
    if any(root.glob("im*.jpg")) or (root / "mirflickr").is_dir():
        return "mirflickr"
    if children:
        return "folder"
    raise DataError(f"cannot tell the format of {root}: no photos.jsonl, label-set folders, MIRFLICKR "
                    "images or label folders (use --format)")


def list_sources(root: str | Path, input_format: str = "auto") -> Listing:
    path = Path(root)
    if not path.exists():
        raise InputNotFoundError(f"input directory does not exist: {path}")
    if not path.is_dir():
        raise DataError(f"input is not a directory: {path}")
    chosen = detect_format(path) if input_format == "auto" else input_format
    readers = {"crawl": _list_crawl, "thesis": _list_thesis, "mirflickr": _list_mirflickr, "folder": _list_folder}
    if chosen not in readers:
        raise ConfigError(f"format must be one of auto, {', '.join(readers)}, got {chosen!r}")
    listing = readers[chosen](path, f"{chosen}:{path}")
    logger.info("%s: %d photos listed, %d rejected while listing (format %s)", path, len(listing.records),
                len(listing.rejections), chosen)
    return listing


def _list_crawl(root: Path, origin: str) -> Listing:
    listing, crawl = Listing(), CrawlDir(root)
    for number, record, problem in crawl.iter_records():
        if record is None:
            listing.rejections.append(Rejection("bad_record", problem or "", origin, path=str(crawl.photos_path)))
            continue
        if not is_valid_photo_id(record.id):
            listing.rejections.append(Rejection("unsafe_id", f"line {number}: id {record.id!r}", origin))
            continue
        image = (root / record.image).resolve()
        if not image.is_relative_to(root.resolve()):
            listing.rejections.append(Rejection("unsafe_path", f"image path leaves the crawl dir: {record.image!r}",
                                                origin, record.id))
            continue
        if not image.is_file():
            listing.rejections.append(Rejection("missing_image", f"image file not found: {record.image}", origin,
                                                record.id, str(image)))
            continue
        exif_path = (root / record.exif) if record.exif else None
        if exif_path is not None and not exif_path.is_file():
            listing.rejections.append(Rejection("missing_exif", f"EXIF file not found: {record.exif}", origin,
                                                record.id, str(exif_path)))
            continue
        listing.records.append(SourceRecord(
            record.id, concepts_from_labels(record.labels), str(image),
            EXIF_FLICKR_JSON if exif_path else EXIF_EMBEDDED, str(exif_path) if exif_path else None, origin))
    return listing


def _list_thesis(root: Path, origin: str) -> Listing:
    listing = Listing()
    for label_set in sorted(child for child in root.iterdir() if (child / "images").is_dir()):
        concepts = concepts_from_labels(labels_from_concept_key(label_set.name))
        images = {photo_id_from_filename(p.name): p for p in sorted((label_set / "images").iterdir())
                  if p.suffix.lower() in IMAGE_SUFFIXES}
        exif_dir = label_set / "exif"
        exifs = {p.stem: p for p in sorted(exif_dir.glob("*.json"))} if exif_dir.is_dir() else {}
        for photo_id in sorted(images.keys() | exifs.keys()):
            image, exif = images.get(photo_id), exifs.get(photo_id)
            if image is None:
                listing.rejections.append(Rejection("exif_without_image", f"{label_set.name}: no image for EXIF file",
                                                    origin, photo_id, str(exif)))
            elif exif is None:
                listing.rejections.append(Rejection("image_without_exif", f"{label_set.name}: no EXIF file for image",
                                                    origin, photo_id, str(image)))
            elif not is_valid_photo_id(photo_id):
                listing.rejections.append(Rejection("unsafe_id", f"photo id {photo_id!r}", origin, None, str(image)))
            else:
                listing.records.append(SourceRecord(photo_id, concepts, str(image), EXIF_FLICKR_JSON, str(exif),
                                                    origin))
    return listing


def _list_mirflickr(root: Path, origin: str) -> Listing:
    image_dir = root / "mirflickr" if (root / "mirflickr").is_dir() else root
    exif_dir = next((d for d in (root / "meta" / "exif_raw", root / "meta" / "exif", root / "exif_raw",
                                 root / "exif", image_dir / "meta" / "exif_raw") if d.is_dir()), None)
    annotation_dir = next((d for d in (root / "annotations", root / "mirflickr25k_annotations_v080", root)
                           if any(_annotation_files(d))), None)
    listing = Listing()
    if annotation_dir is None:
        raise DataError(f"{root}: no MIRFLICKR annotation files ({{concept}}.txt with image numbers) found")
    labels: dict[str, set[str]] = {}
    for concept, path in _annotation_files(annotation_dir):
        for line in path.read_text(encoding="utf-8", errors="replace").split():
            if line.isdigit():
                labels.setdefault(str(int(line)), set()).add(concept)
    for image in sorted(image_dir.glob("im*.jpg")):
        number = image.stem[2:]
        if not number.isdigit():
            continue
        photo_id = str(int(number))
        exif = exif_dir / f"exif{photo_id}.txt" if exif_dir else None
        if photo_id not in labels:
            continue  # MIRFLICKR images without any annotated concept are not part of a labelled set
        if exif is None or not exif.is_file():
            listing.rejections.append(Rejection("image_without_exif", "no exif{N}.txt for image", origin, photo_id,
                                                str(image)))
            continue
        concepts = frozenset((concept, None) for concept in sorted(labels[photo_id]))
        listing.records.append(SourceRecord(photo_id, concepts, str(image), EXIF_MIRFLICKR_TXT, str(exif), origin))
    return listing


def _annotation_files(directory: Path) -> Iterator[tuple[str, Path]]:
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.txt")):
        if re.fullmatch(r"[a-z_]+", path.stem) and not path.stem.endswith("_r1") and path.stem != "readme":
            yield path.stem, path


def _list_folder(root: Path, origin: str) -> Listing:
    listing = Listing()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        parts = path.relative_to(root).parts[:-1]
        if not parts or len(parts) > 2:
            listing.rejections.append(Rejection("no_label", "photos must sit in ROOT/label/ or ROOT/super/sub/",
                                                origin, None, str(path)))
            continue
        photo_id = photo_id_from_filename(path.name)
        if not is_valid_photo_id(photo_id):  # plain photo folders rarely use Flickr ids: derive a stable one
            photo_id = _stable_id(path.relative_to(root).as_posix())
        listing.records.append(SourceRecord(photo_id, concepts_from_labels(list(parts)), str(path), EXIF_EMBEDDED,
                                            None, origin))
    return listing


def _stable_id(text: str) -> str:
    import hashlib

    return str(int(hashlib.sha256(text.encode()).hexdigest()[:15], 16))
