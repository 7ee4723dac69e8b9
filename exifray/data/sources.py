"""Listing photos from the inputs ingest understands, without decoding anything: local folders or object-store
prefixes (`s3://bucket/crawl`), listed once.

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
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from exifray import schema
from exifray.crawl.records import (
    is_valid_photo_id,
    labels_from_concept_key,
    parse_record_lines,
    photo_id_from_filename,
)
from exifray.errors import ConfigError, DataError, InputNotFoundError
from exifray.fsutil import filesystem_and_path, is_uri, read_location

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


class Tree:
    """Every file under an input root, listed once: a local folder or an object-store prefix (`s3://bucket/crawl`,
    any pyarrow URI). Layout readers work on the listing (relative POSIX paths), so a crawl dir on S3 costs one
    recursive listing, not a request per photo; records name their files by full location."""

    def __init__(self, location: str | Path):
        import pyarrow.fs as pafs

        self.location = str(location)
        try:
            self.fs, self.root = filesystem_and_path(self.location)
            info = self.fs.get_file_info(self.root)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot open input {self.location}: {exc}") from exc
        if info.type == pafs.FileType.File:
            raise DataError(f"input is not a directory: {self.location}")
        entries = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        self.files = {entry.path[len(self.root) + 1:]: entry.size for entry in entries
                      if entry.type == pafs.FileType.File}
        if info.type == pafs.FileType.NotFound and not self.files:  # an object store has no empty folders
            raise InputNotFoundError(f"input directory does not exist: {self.location}")
        # Folder → the files and the folders directly in it ("" is the root), built once from the listing.
        self._files_in: dict[str, list[str]] = defaultdict(list)
        self._dirs_in: dict[str, set[str]] = defaultdict(set)
        for name in sorted(self.files):
            self._files_in[_parent(name)].append(name)
            folder = _parent(name)
            while folder and PurePosixPath(folder).name not in self._dirs_in[_parent(folder)]:
                self._dirs_in[_parent(folder)].add(PurePosixPath(folder).name)
                folder = _parent(folder)
        self._files_in, self._dirs_in = dict(self._files_in), dict(self._dirs_in)  # lookups must not add folders

    def where(self, relative: str) -> str:
        """The full location of a listed file: a local path or a URI, as workers read it."""
        if is_uri(self.location):
            return f"{self.location.rstrip('/')}/{relative}"
        return str(Path(self.root) / relative)

    def is_file(self, relative: str) -> bool:
        return relative in self.files

    def is_dir(self, relative: str) -> bool:
        return relative.strip("/") in self._files_in or relative.strip("/") in self._dirs_in

    def subdirs(self, relative: str = "") -> list[str]:
        """Names of the folders directly inside `relative` ("" is the root)."""
        return sorted(self._dirs_in.get(relative.strip("/"), ()))

    def files_in(self, relative: str = "", recursive: bool = False) -> list[str]:
        """Relative paths of the files inside the folder `relative`, sorted; `recursive` includes subfolders."""
        folder = relative.strip("/")
        if not recursive:
            return list(self._files_in.get(folder, ()))
        return sorted(name for name in self.files if not folder or name.startswith(f"{folder}/"))

    def read_text(self, relative: str) -> str:
        try:
            return read_location(self.where(relative)).decode("utf-8", errors="replace")
        except OSError as exc:
            raise DataError(f"cannot read {self.where(relative)}: {exc}") from exc


def _parent(relative: str) -> str:
    parent = str(PurePosixPath(relative).parent)
    return "" if parent == "." else parent


def _name(relative: str) -> str:
    return PurePosixPath(relative).name


def _images(names: list[str]) -> list[str]:
    return [name for name in names if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES]


def detect_format(tree: Tree) -> str:
    if tree.is_file(schema.PHOTOS_FILE):
        return "crawl"
    children = tree.subdirs()
    if any(tree.is_dir(f"{child}/images") for child in children):
        return "thesis"
    if any(_name(f).startswith("im") and f.endswith(".jpg") for f in tree.files_in()) or tree.is_dir("mirflickr"):
        return "mirflickr"
    if children:
        return "folder"
    raise DataError(f"cannot tell the format of {tree.location}: no photos.jsonl, label-set folders, MIRFLICKR "
                    "images or label folders (use --format)")


def list_sources(root: str | Path, input_format: str = "auto") -> Listing:
    """The records of one input root: a local folder or an object-store prefix (`s3://bucket/crawl`)."""
    tree = Tree(root)
    chosen = detect_format(tree) if input_format == "auto" else input_format
    readers = {"crawl": _list_crawl, "thesis": _list_thesis, "mirflickr": _list_mirflickr, "folder": _list_folder}
    if chosen not in readers:
        raise ConfigError(f"format must be one of auto, {', '.join(readers)}, got {chosen!r}")
    listing = readers[chosen](tree, f"{chosen}:{tree.location}")
    logger.info("%s: %d photos listed, %d rejected while listing (format %s)", tree.location, len(listing.records),
                len(listing.rejections), chosen)
    return listing


def _list_crawl(tree: Tree, origin: str) -> Listing:
    listing = Listing()
    photos = tree.where(schema.PHOTOS_FILE)
    for number, record, problem in parse_record_lines(tree.read_text(schema.PHOTOS_FILE).splitlines()):
        if record is None:
            listing.rejections.append(Rejection("bad_record", problem or "", origin, path=photos))
            continue
        if not is_valid_photo_id(record.id):
            listing.rejections.append(Rejection("unsafe_id", f"line {number}: id {record.id!r}", origin))
            continue
        image = posixpath.normpath(record.image)
        if image.startswith(("../", "/")) or image == "..":
            listing.rejections.append(Rejection("unsafe_path", f"image path leaves the crawl dir: {record.image!r}",
                                                origin, record.id))
            continue
        if not tree.is_file(image):
            listing.rejections.append(Rejection("missing_image", f"image file not found: {record.image}", origin,
                                                record.id, tree.where(image)))
            continue
        exif = posixpath.normpath(record.exif) if record.exif else None
        if exif is not None and not tree.is_file(exif):
            listing.rejections.append(Rejection("missing_exif", f"EXIF file not found: {record.exif}", origin,
                                                record.id, tree.where(exif)))
            continue
        listing.records.append(SourceRecord(
            record.id, concepts_from_labels(record.labels), tree.where(image),
            EXIF_FLICKR_JSON if exif else EXIF_EMBEDDED, tree.where(exif) if exif else None, origin))
    return listing


def _list_thesis(tree: Tree, origin: str) -> Listing:
    listing = Listing()
    for label_set in [child for child in tree.subdirs() if tree.is_dir(f"{child}/images")]:
        concepts = concepts_from_labels(labels_from_concept_key(label_set))
        images = {photo_id_from_filename(_name(p)): p for p in _images(tree.files_in(f"{label_set}/images"))}
        exifs = {PurePosixPath(p).stem: p for p in tree.files_in(f"{label_set}/exif") if p.endswith(".json")}
        for photo_id in sorted(images.keys() | exifs.keys()):
            image, exif = images.get(photo_id), exifs.get(photo_id)
            if image is None:
                listing.rejections.append(Rejection("exif_without_image", f"{label_set}: no image for EXIF file",
                                                    origin, photo_id, tree.where(exifs[photo_id])))
            elif exif is None:
                listing.rejections.append(Rejection("image_without_exif", f"{label_set}: no EXIF file for image",
                                                    origin, photo_id, tree.where(image)))
            elif not is_valid_photo_id(photo_id):
                listing.rejections.append(Rejection("unsafe_id", f"photo id {photo_id!r}", origin, None,
                                                    tree.where(image)))
            else:
                listing.records.append(SourceRecord(photo_id, concepts, tree.where(image), EXIF_FLICKR_JSON,
                                                    tree.where(exif), origin))
    return listing


def _list_mirflickr(tree: Tree, origin: str) -> Listing:
    image_dir = "mirflickr" if tree.is_dir("mirflickr") else ""
    exif_dir = next((d for d in ("meta/exif_raw", "meta/exif", "exif_raw", "exif", f"{image_dir}/meta/exif_raw")
                     if tree.is_dir(d)), None)
    annotation_dir = next((d for d in ("annotations", "mirflickr25k_annotations_v080", "")
                           if any(_annotation_files(tree, d))), None)
    listing = Listing()
    if annotation_dir is None:
        raise DataError(f"{tree.location}: no MIRFLICKR annotation files ({{concept}}.txt with image numbers) found")
    labels: dict[str, set[str]] = {}
    for concept, path in _annotation_files(tree, annotation_dir):
        for line in tree.read_text(path).split():
            if line.isdigit():
                labels.setdefault(str(int(line)), set()).add(concept)
    for image in tree.files_in(image_dir):
        name = _name(image)
        number = PurePosixPath(name).stem[2:]
        if not (name.startswith("im") and name.endswith(".jpg") and number.isdigit()):
            continue
        photo_id = str(int(number))
        exif = f"{exif_dir}/exif{photo_id}.txt" if exif_dir else None
        if photo_id not in labels:
            continue  # MIRFLICKR images without any annotated concept are not part of a labelled set
        if exif is None or not tree.is_file(exif):
            listing.rejections.append(Rejection("image_without_exif", "no exif{N}.txt for image", origin, photo_id,
                                                tree.where(image)))
            continue
        concepts = frozenset((concept, None) for concept in sorted(labels[photo_id]))
        listing.records.append(SourceRecord(photo_id, concepts, tree.where(image), EXIF_MIRFLICKR_TXT,
                                            tree.where(exif), origin))
    return listing


def _annotation_files(tree: Tree, directory: str) -> Iterator[tuple[str, str]]:
    for path in tree.files_in(directory):
        stem = PurePosixPath(path).stem
        if (path.endswith(".txt") and re.fullmatch(r"[a-z_]+", stem) and not stem.endswith("_r1")
                and stem != "readme"):
            yield stem, path


def _list_folder(tree: Tree, origin: str) -> Listing:
    listing = Listing()
    for path in _images(tree.files_in(recursive=True)):
        parts = PurePosixPath(path).parts[:-1]
        if not parts or len(parts) > 2:
            listing.rejections.append(Rejection("no_label", "photos must sit in ROOT/label/ or ROOT/super/sub/",
                                                origin, None, tree.where(path)))
            continue
        photo_id = photo_id_from_filename(_name(path))
        if not is_valid_photo_id(photo_id):  # plain photo folders rarely use Flickr ids: derive a stable one
            photo_id = _stable_id(path)
        listing.records.append(SourceRecord(photo_id, concepts_from_labels(list(parts)), tree.where(path),
                                            EXIF_EMBEDDED, None, origin))
    return listing


def _stable_id(text: str) -> str:
    import hashlib

    return str(int(hashlib.sha256(text.encode()).hexdigest()[:15], 16))
