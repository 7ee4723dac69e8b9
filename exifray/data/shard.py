"""One shard of an ingest, as a Ray Data task runs it: decode each record's photo once (draft mode) and read its
EXIF (`decode_record`), then write the shard's Parquet file itself and return only a small summary
(`process_shard`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exifray import schema
from exifray.config import IngestConfig
from exifray.data.photo import DecodeParams, Photo, Rejected, read_photo
from exifray.data.sources import (
    EXIF_EMBEDDED,
    EXIF_FLICKR_JSON,
    EXIF_MIRFLICKR_TXT,
    Rejection,
)
from exifray.errors import ExifParseError
from exifray.exif.parse import ExifReading, read_flickr_exif, read_mirflickr_exif
from exifray.exif.tags import TAG_NAMES
from exifray.fsutil import TooLarge, filesystem_and_path, put_bytes, read_bytes_or_none, read_location

if TYPE_CHECKING:
    import pyarrow as pa


# --- decoding one record (worker side, pure) ---------------------------------------------------

@dataclass
class Decoded:
    images: dict[int, bytes]
    exif: ExifReading


def read_record_exif(record: dict[str, Any], photo: Photo) -> ExifReading:
    """The record's EXIF: embedded in the photo (read by `read_photo`) or from its side file."""
    kind, path = record["exif_kind"], record["exif_path"]
    try:
        if kind == EXIF_EMBEDDED:
            if photo.exif_error is not None:
                raise ExifParseError(photo.exif_error)
            return photo.exif
        data = read_location(path)
        if kind == EXIF_FLICKR_JSON:
            return read_flickr_exif(data)
        if kind == EXIF_MIRFLICKR_TXT:
            return read_mirflickr_exif(data)
    except ExifParseError as exc:
        raise Rejected("bad_exif", str(exc)) from exc
    except OSError as exc:
        raise Rejected("unreadable_exif", f"{type(exc).__name__}: {exc}") from exc
    raise Rejected("bad_exif", f"unknown EXIF source kind {kind!r}")


def decode_record(record: dict[str, Any], params: DecodeParams) -> Decoded:
    try:
        data = read_location(record["image_path"], params.max_bytes)
    except TooLarge as exc:
        raise Rejected("file_too_large", f"{exc.size} bytes > {params.max_bytes}") from exc
    except OSError as exc:
        raise Rejected("unreadable_image", f"{type(exc).__name__}: {exc}") from exc
    photo = read_photo(data, params, with_exif=record["exif_kind"] == EXIF_EMBEDDED)
    images = {size: array.tobytes() for size, array in photo.images.items()}
    return Decoded(images, read_record_exif(record, photo))


def decode_params(config: IngestConfig) -> DecodeParams:
    return DecodeParams(tuple(config.sizes), max_pixels=config.max_pixels, max_bytes=config.max_file_bytes)


# --- one shard (a Ray Data task) ---------------------------------------------------------------

def _shard_schema(sizes: tuple[int, ...]) -> pa.Schema:
    import pyarrow as pa

    fields = [pa.field(schema.COL_PHOTO_ID, pa.string()), pa.field(schema.COL_LABELS, pa.list_(pa.string())),
              pa.field(schema.COL_SPLIT, pa.string())]
    fields += [pa.field(schema.image_column(size), pa.binary()) for size in sizes]
    fields += [pa.field(schema.exif_column(tag), pa.float64()) for tag in TAG_NAMES]
    return pa.schema(fields, metadata={b"exifray.image_layout": b"HWC uint8 RGB, row-major bytes"})


def process_shard(shard: dict[str, Any]) -> dict[str, Any]:
    """Decode, parse and write one shard into the dataset's version folder (local or any pyarrow URI); returns a
    JSON summary (no pixels), which is also stored beside the shard so that a re-run of an interrupted ingest
    skips the shard (`part-NNNNN.summary.json`, written after the Parquet file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = filesystem_and_path(shard["uri"])
    summary_path = path.removesuffix(".parquet") + ".summary.json"
    done = read_bytes_or_none(fs, summary_path)
    if done is not None:
        return {"summary": done.decode("utf-8")}
    sizes = tuple(shard["sizes"])
    params = DecodeParams(sizes, max_pixels=shard["max_pixels"], max_bytes=shard["max_bytes"])
    columns: dict[str, list[Any]] = {name: [] for name in _shard_schema(sizes).names}
    rejections: list[dict[str, Any]] = []
    unparsed: Counter[str] = Counter()
    train_exif: dict[str, list[float | None]] = {tag: [] for tag in TAG_NAMES}
    for record in json.loads(shard["records"]):
        try:
            decoded = decode_record(record, params)
        except Rejected as exc:
            rejections.append(Rejection(exc.reason, exc.detail, record["origin"], record["photo_id"],
                                        record["image_path"]).to_json())
            continue
        values = decoded.exif.as_floats()
        unparsed.update(decoded.exif.unparsed)
        columns[schema.COL_PHOTO_ID].append(record["photo_id"])
        columns[schema.COL_LABELS].append(record["labels"])
        columns[schema.COL_SPLIT].append(record["split"])
        for size in sizes:
            columns[schema.image_column(size)].append(decoded.images[size])
        for tag in TAG_NAMES:
            columns[schema.exif_column(tag)].append(values[tag])
            if record["split"] == "train":
                train_exif[tag].append(values[tag])
    table = pa.table(columns, schema=_shard_schema(sizes))
    written = {}
    if table.num_rows:
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        content = buffer.getvalue().to_pybytes()
        put_bytes(fs, path, content)  # hashed here, from the bytes written: no second read
        written = {"file": shard["relative"], "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    summary = json.dumps({"shard": shard["index"], "rows": table.num_rows, "rejections": rejections,
                          "written": written, "unparsed": dict(unparsed), "train_exif": train_exif,
                          "nulls": {tag: int(table[schema.exif_column(tag)].null_count)
                                    for tag in TAG_NAMES} if table.num_rows else {},
                          "splits": Counter(columns[schema.COL_SPLIT]), "class_counts": _class_counts(columns)})
    put_bytes(fs, summary_path, summary.encode("utf-8"))
    return {"summary": summary}


def _class_counts(columns: dict[str, list[Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for labels, split in zip(columns[schema.COL_LABELS], columns[schema.COL_SPLIT], strict=True):
        counts.setdefault(split, Counter()).update(labels)
    return {split: dict(counter) for split, counter in counts.items()}
