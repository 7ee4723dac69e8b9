"""Ingest: CRAWL DIRs (and thesis, MIRFLICKR, folder layouts) → a DATASET DIR, with Ray Data.

    exifray ingest data/crawl --out data/dataset --sizes 50,150 --labels super

The driver lists and merges records (cheap, no decoding), fixes classes and splits, and cuts the
records into shards sorted by photo id. Ray Data then runs one task per shard: each decodes its JPEGs
once (Pillow draft mode, so a 4000 px photo is decoded at 1/8 scale when 150 px is all we need), parses
EXIF, and writes its Parquet file itself, to a local path or any pyarrow URI (`s3://bucket/dataset`). Tasks
return only small summaries (counts, rejections, the train split's raw EXIF for the encoder), never pixels, so
the driver stays light.

Publishing is atomic on object storage too: shards go to `OUT/versions/<UTC stamp>-<plan digest>/shards/
part-NNNNN.parquet`, each followed by its summary; the card (`dataset.json`), written last, lists the shard files
(the manifest) and readers read only those. A re-run writes a new version beside the current one, switches the
card, then removes the old version; a re-run of an interrupted ingest (same input and settings: same digest)
continues the unfinished version and skips the shards it had written. The same input gives the same data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from exifray import __version__, schema
from exifray.config import IngestConfig
from exifray.data.card import CARD_VERSION, DatasetCard, ShardFile, dataset_id
from exifray.data.photo import DecodeParams, Photo, Rejected, read_photo
from exifray.data.sources import (
    EXIF_EMBEDDED,
    EXIF_FLICKR_JSON,
    EXIF_MIRFLICKR_TXT,
    Rejection,
    SourceRecord,
    list_sources,
)
from exifray.errors import DataError, ExifParseError
from exifray.exif.encode import ExifEncoder
from exifray.exif.parse import ExifReading, read_flickr_exif, read_mirflickr_exif
from exifray.exif.tags import CATALOGUE, TAG_NAMES
from exifray.fsutil import TooLarge, filesystem_and_path, is_uri, put_bytes, read_bytes_or_none, read_location

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

logger = logging.getLogger(__name__)

VERSIONS_DIR = "versions"  # DATASET DIR/versions/<UTC stamp>-<plan digest>/shards/part-NNNNN.parquet


# --- labels and splits (driver side, pure) -----------------------------------------------------

def split_for(photo_id: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """Deterministic split from photo id and seed alone: adding photos never moves existing ones."""
    digest = hashlib.sha256(f"{seed}:{photo_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < fractions[0]:
        return "train"
    return "val" if position < fractions[0] + fractions[1] else "test"


def merge_records(records: list[SourceRecord]) -> tuple[list[SourceRecord], int]:
    """One record per photo id; the same id from several label sets or inputs gets the union of labels
    (the first record's files are used). Returns the records and how many duplicates were merged."""
    merged: dict[str, SourceRecord] = {}
    duplicates = 0
    for record in records:
        first = merged.get(record.photo_id)
        if first is None:
            merged[record.photo_id] = record
            continue
        duplicates += 1
        merged[record.photo_id] = SourceRecord(first.photo_id, first.concepts | record.concepts, first.image_path,
                                               first.exif_kind, first.exif_path, first.origin)
    return sorted(merged.values(), key=lambda r: (len(r.photo_id), r.photo_id)), duplicates


def classes_at_level(concepts: frozenset[tuple[str, str | None]], level: str) -> list[str]:
    """Class names of one photo at `super` (indoor) or `sub` (indoor/kitchen) level."""
    if level == "super":
        return sorted({parent for parent, _ in concepts})
    return sorted({f"{parent}/{child}" for parent, child in concepts if child})


@dataclass
class LabelPlan:
    classes: list[str]
    label_mode: str
    labels: dict[str, list[str]]  # photo id → classes
    hierarchy: dict[str, list[str]]
    filtered: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)


def plan_labels(records: list[SourceRecord], config: IngestConfig) -> LabelPlan:
    hierarchy: dict[str, set[str]] = {}
    for record in records:
        for parent, child in record.concepts:
            hierarchy.setdefault(parent, set())
            if child:
                hierarchy[parent].add(f"{parent}/{child}")
    wanted = set(config.concepts)
    unknown = wanted - set(hierarchy) - {sub for subs in hierarchy.values() for sub in subs}
    if unknown:
        known = sorted(hierarchy) if config.label_level == "super" else sorted(set().union(*hierarchy.values()))
        raise DataError(f"--concepts names classes not in the input: {sorted(unknown)}; known: {known}")
    filtered: Counter[str] = Counter()
    labels: dict[str, list[str]] = {}
    for record in records:
        classes = classes_at_level(record.concepts, config.label_level)
        if wanted:
            classes = [c for c in classes if c in wanted]
        if not classes:
            filtered["no_sub_concept" if config.label_level == "sub" and not wanted else "concept_filter"] += 1
            continue
        labels[record.photo_id] = classes
    multi = any(len(classes) > 1 for classes in labels.values())
    mode = ("multi" if multi else "single") if config.label_mode == "auto" else config.label_mode
    rejections = []
    if mode == "single":
        for photo_id in [p for p, classes in labels.items() if len(classes) > 1]:
            rejections.append(Rejection("ambiguous_labels", f"{labels.pop(photo_id)} in single-label mode",
                                        "labels", photo_id))
    classes = sorted({c for cs in labels.values() for c in cs})
    if not classes:
        raise DataError("no labelled photos left after choosing the label level and concept filter")
    return LabelPlan(classes, mode, labels, {k: sorted(v) for k, v in sorted(hierarchy.items())}, filtered, rejections)


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


# --- the whole ingest --------------------------------------------------------------------------

@dataclass
class IngestSummary:
    out: str
    photos: int
    quarantined: int
    merged_duplicates: int
    filtered: dict[str, int]
    by_reason: dict[str, int]
    seconds: float
    listed: int
    pipeline_s: float = math.nan  # the shard tasks alone (Ray Data: decode, EXIF, Parquet), without listing or Ray
    warm_s: float = math.nan  # starting the workers and Ray Data's helper actors, before the shard tasks

    @property
    def photos_per_second(self) -> float:
        return self.listed / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.by_reason.items())) or "none"
        filtered = ", ".join(f"{k}={v}" for k, v in sorted(self.filtered.items())) or "none"
        return (f"ingest: {self.photos} photos written, {self.quarantined} quarantined ({reasons}), "
                f"{self.merged_duplicates} duplicate ids merged, filtered: {filtered}; {self.listed} listed in "
                f"{self.seconds:.1f} s ({self.photos_per_second:.1f} photos/s) → {self.out}")


def _init_ray(config: IngestConfig) -> bool:
    """Start (or join) Ray; returns True when this call started it and so should shut it down."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=config.address, num_cpus=config.num_cpus if config.address is None else None,
             include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    return True


@dataclass
class IngestPlan:
    """What the driver decides before any photo is decoded: labels, splits, and the shards' records."""

    plan: LabelPlan
    payloads: list[str]  # per shard: its records as JSON
    rejections: list[Rejection]
    formats: dict[str, str]
    duplicates: int
    listed: int

    def items(self, config: IngestConfig, version: str) -> list[dict[str, Any]]:
        """One `process_shard` input per shard, writing into `version` of `config.out`."""
        return [{"index": i, "sizes": list(config.sizes), "max_pixels": config.max_pixels,
                 "max_bytes": config.max_file_bytes, "relative": _shard_relative(version, i),
                 "uri": _join(config.out, _shard_relative(version, i)), "records": payload}
                for i, payload in enumerate(self.payloads)]


def _import_decoder() -> bool:
    import pyarrow.parquet  # noqa: F401 - imported for its side effect: a warm worker
    from PIL import Image  # noqa: F401

    import exifray.data.ingest  # noqa: F401

    return True


def _warm_workers(tasks: int) -> None:
    """Start the workers the shard tasks will run on and import the decoder there, and Ray Data's helper actors
    (part of the fixed start-up, which `IngestSummary.pipeline_s` leaves out): Ray reuses a job's idle workers for
    its next tasks. Until Ray Data's autoscaling coordinator answers, a dataset sees a cluster of 0 CPUs and runs
    one task at a time; a one-row dataset started first has it up (40 sleeping 0.25-s tasks: 8.1-8.8 s without,
    5.6-5.7 s with)."""
    import ray

    cpus = int(ray.available_resources().get("CPU", 1))
    remote = ray.remote(num_cpus=1)(_import_decoder)
    ray.get([remote.remote() for _ in range(max(1, min(tasks, cpus)))])
    ray.data.range(1).materialize()


@contextlib.contextmanager
def _one_operator_context() -> Iterator[None]:
    """Ray Data without per-operator resource reservation while ingest runs. The pipeline has one operator, and
    the reservation (half the CPUs set aside per operator, handed out as its budget grows) kept it at about one
    task at a time on 2 CPUs: 40 sleeping tasks of 0.25 s took 10.0 s with it and 6.9 s without."""
    from ray.data import DataContext

    context = DataContext.get_current()
    before = context.op_resource_reservation_enabled
    context.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        context.op_resource_reservation_enabled = before


def plan_ingest(config: IngestConfig) -> IngestPlan:
    records, rejections = [], []
    formats = {}
    for root in config.inputs:
        listing = list_sources(root, config.input_format)
        records += listing.records
        rejections += listing.rejections
        formats[root] = listing.records[0].origin.split(":", 1)[0] if listing.records else config.input_format
    listed = len(records)
    records, duplicates = merge_records(records)
    plan = plan_labels(records, config)
    rejections += plan.rejections
    kept = [r for r in records if r.photo_id in plan.labels]
    shards = [kept[i:i + config.shard_size] for i in range(0, len(kept), config.shard_size)]
    payloads = [json.dumps([_record_payload(r, plan, config) for r in shard]) for shard in shards]
    return IngestPlan(plan, payloads, rejections, formats, duplicates, listed)


def run_ingest(config: IngestConfig) -> IngestSummary:
    import ray

    started = time.perf_counter()
    prepared = plan_ingest(config)
    plan, rejections = prepared.plan, list(prepared.rejections)
    formats, duplicates, listed = prepared.formats, prepared.duplicates, prepared.listed
    fs, root = filesystem_and_path(config.out)
    version = _version(fs, root, _plan_digest(config, prepared.payloads))
    owns_ray = _init_ray(config)
    try:
        items = prepared.items(config, version)
        warm_started = time.perf_counter()
        _warm_workers(len(items))
        pipeline_started = time.perf_counter()
        warm_s = pipeline_started - warm_started
        with _one_operator_context():
            dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
            summaries = [json.loads(row["summary"]) for row in dataset.map(process_shard).take_all()]
        pipeline_s = time.perf_counter() - pipeline_started
    finally:
        if owns_ray:
            ray.shutdown()
    summaries.sort(key=lambda s: s["shard"])
    for summary in summaries:
        rejections += [Rejection(**r) for r in summary["rejections"]]
    if not any(s["rows"] for s in summaries):
        raise DataError(f"no photo could be ingested from {list(config.inputs)}; "
                        f"quarantine reasons: {dict(Counter(r.reason for r in rejections))}")
    card = build_card(config, plan, summaries, rejections, formats, duplicates, listed)
    quarantine = "".join(json.dumps(r.to_json()) + "\n" for r in rejections).encode("utf-8")
    put_bytes(fs, f"{root}/{schema.QUARANTINE_FILE}", quarantine)
    put_bytes(fs, f"{root}/{schema.DATASET_CARD}", (json.dumps(card.to_dict(), indent=2) + "\n").encode("utf-8"))
    _remove_unlisted(fs, root, version)  # the card is switched: older versions are no longer read
    summary = IngestSummary(config.out, sum(s["rows"] for s in summaries), len(rejections), duplicates,
                            dict(plan.filtered), dict(Counter(r.reason for r in rejections)),
                            time.perf_counter() - started, listed, pipeline_s, warm_s)
    logger.info(summary.line())
    return summary


# --- the DATASET DIR's versions --------------------------------------------------------------------------------

def _join(location: str, relative: str) -> str:
    return f"{str(location).rstrip('/')}/{relative}"


def _shard_relative(version: str, index: int) -> str:
    return f"{VERSIONS_DIR}/{version}/{schema.SHARDS_DIR}/part-{index:05d}.parquet"


def _plan_digest(config: IngestConfig, payloads: list[str]) -> str:
    """What decides a version's shards: the records of each shard and the decoding settings."""
    digest = hashlib.sha256(json.dumps([list(config.sizes), config.max_pixels, config.max_file_bytes,
                                        CARD_VERSION]).encode())
    for payload in payloads:
        digest.update(hashlib.sha256(payload.encode()).digest())
    return digest.hexdigest()[:12]


def _listed_version(fs: pafs.FileSystem, root: str) -> str | None:
    """The version the current card lists (None: no card, or one from before versions)."""
    data = read_bytes_or_none(fs, f"{root}/{schema.DATASET_CARD}")
    if data is None:
        return None
    shards = json.loads(data).get("shards") or []
    parts = PurePosixPath(shards[0]["path"]).parts if shards else ()
    return parts[1] if len(parts) > 2 and parts[0] == VERSIONS_DIR else None


def _version(fs: pafs.FileSystem, root: str, digest: str) -> str:
    """The version folder to write: an unfinished one of the same plan (an interrupted ingest: its written shards
    are skipped), else a new one. The version the card lists is never written into."""
    import pyarrow.fs as pafs

    listed = _listed_version(fs, root)
    entries = fs.get_file_info(pafs.FileSelector(f"{root}/{VERSIONS_DIR}", allow_not_found=True))
    unfinished = sorted(PurePosixPath(e.path).name for e in entries if e.type == pafs.FileType.Directory
                        and PurePosixPath(e.path).name.endswith(f"-{digest}")
                        and PurePosixPath(e.path).name != listed)
    if unfinished:
        logger.info("resuming the interrupted ingest in %s/%s (its finished shards are kept)", VERSIONS_DIR,
                    unfinished[-1])
        return unfinished[-1]
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{digest}"


def _remove_unlisted(fs: pafs.FileSystem, root: str, version: str) -> None:
    """After the card lists `version`: every other version folder, and the shards/ folder of the layout from
    before versions."""
    import pyarrow.fs as pafs

    for entry in fs.get_file_info(pafs.FileSelector(f"{root}/{VERSIONS_DIR}", allow_not_found=True)):
        if entry.type == pafs.FileType.Directory and PurePosixPath(entry.path).name != version:
            fs.delete_dir(entry.path)
    legacy = f"{root}/{schema.SHARDS_DIR}"
    if fs.get_file_info(legacy).type == pafs.FileType.Directory:
        fs.delete_dir(legacy)


def _record_payload(record: SourceRecord, plan: LabelPlan, config: IngestConfig) -> dict[str, object]:
    return {"photo_id": record.photo_id, "labels": plan.labels[record.photo_id],
            "split": split_for(record.photo_id, config.seed, config.split_fractions),
            "image_path": record.image_path, "exif_kind": record.exif_kind, "exif_path": record.exif_path,
            "origin": record.origin}


def build_card(config: IngestConfig, plan: LabelPlan, summaries: list[dict[str, Any]],
               rejections: list[Rejection], formats: dict[str, str], duplicates: int, listed: int) -> DatasetCard:
    """The dataset card: classes, splits and counts, EXIF coverage, the train-only encoder fit, and the manifest of
    the shard files with the dataset's content identity."""
    counts: dict[str, Counter[str]] = {split: Counter() for split in schema.SPLITS}
    split_sizes: Counter[str] = Counter()
    nulls: Counter[str] = Counter()
    train_exif: dict[str, list[float | None]] = {tag: [] for tag in TAG_NAMES}
    unparsed: Counter[str] = Counter()
    for summary in summaries:
        split_sizes.update(summary["splits"])
        nulls.update(summary["nulls"])
        unparsed.update(summary["unparsed"])
        for split, class_counts in summary["class_counts"].items():
            counts[split].update(class_counts)
        for tag in TAG_NAMES:
            train_exif[tag] += summary["train_exif"][tag]
    total = sum(split_sizes.values())
    encoder = ExifEncoder.fit(train_exif)  # train split only: val/test statistics never leak in
    shards = tuple(ShardFile(s["written"]["file"], s["rows"], s["written"]["bytes"],
                             s["written"]["sha256"]) for s in summaries if s["rows"])
    return DatasetCard.from_dict({
        "version": CARD_VERSION,
        "created_by": f"exifray {__version__}",
        "inputs": [{"path": p if is_uri(p) else str(Path(p).resolve()), "format": formats[p]} for p in config.inputs],
        "label_level": config.label_level,
        "label_mode": plan.label_mode,
        "classes": plan.classes,
        "hierarchy": plan.hierarchy,
        "concept_filter": list(config.concepts),
        "splits": {"fractions": dict(zip(schema.SPLITS, config.split_fractions, strict=True)), "seed": config.seed,
                   "sizes": {split: split_sizes.get(split, 0) for split in schema.SPLITS}},
        "counts": {split: {c: counts[split].get(c, 0) for c in plan.classes} for split in schema.SPLITS},
        "photos": total,
        "image_sizes": list(config.sizes),
        "decode": decode_params(config).to_dict(),
        "image_columns": {schema.image_column(s): {"shape": [s, s, 3], "dtype": "uint8", "layout": "HWC"}
                          for s in config.sizes},
        "exif": {
            "tags": [{"name": spec.name, "kind": spec.kind.value, "aliases": list(spec.aliases),
                      "column": schema.exif_column(spec.name),
                      "coverage": round(1 - nulls.get(spec.name, 0) / total, 4) if total else 0.0,
                      "unparsed_values": unparsed.get(spec.name, 0)} for spec in CATALOGUE],
            "encoder": encoder.to_dict(),
            "encoder_fitted_on": "train",
        },
        "quarantine": {"total": len(rejections), "by_reason": dict(Counter(r.reason for r in rejections))},
        "filtered": dict(plan.filtered),
        "merged_duplicate_ids": duplicates,
        "listed": listed,
        "source": {"shards": len(shards), "shard_size": config.shard_size},
        "dataset_id": dataset_id(shards),
        "shards": [vars(shard) for shard in shards],
    })
