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
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exifray import schema
from exifray.config import IngestConfig
from exifray.data.sources import (
    Rejection,
    list_sources,
)
from exifray.errors import DataError
from exifray.fsutil import filesystem_and_path, is_uri, put_bytes

if TYPE_CHECKING:
    pass

from exifray.data.labels import LabelPlan, merge_records, plan_labels
from exifray.data.labels import classes_at_level as classes_at_level
from exifray.data.labels import split_for as split_for
from exifray.data.shard import decode_params as decode_params
from exifray.data.shard import decode_record as decode_record
from exifray.data.shard import process_shard
from exifray.data.versions import (
    build_card,
    join_location,
    plan_digest,
    record_payload,
    remove_unlisted,
    shard_relative,
    version_folder,
)

logger = logging.getLogger(__name__)


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
    if config.address is not None:
        ray.init(address=config.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        return True
    from exifray.ray_start import start_ray

    start_ray(num_cpus=config.num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
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

    def items(self, config: IngestConfig, version: str) -> list[dict[str, object]]:
        """One `process_shard` input per shard, writing into `version` of `config.out`."""
        return [{"index": i, "sizes": list(config.sizes), "max_pixels": config.max_pixels,
                 "max_bytes": config.max_file_bytes, "relative": shard_relative(version, i),
                 "uri": join_location(config.out, shard_relative(version, i)), "records": payload}
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
    payloads = [json.dumps([record_payload(r, plan, config) for r in shard]) for shard in shards]
    return IngestPlan(plan, payloads, rejections, formats, duplicates, listed)


def _absolute(config: IngestConfig) -> IngestConfig:
    """Local inputs and OUT as absolute paths: the decode tasks resolve a relative path in their own working
    directory, which is the driver's when Ray started, not after a later chdir (a notebook, a test)."""
    from dataclasses import replace

    def absolute(location: str) -> str:
        return location if is_uri(location) else str(Path(location).resolve())

    return replace(config, inputs=tuple(absolute(i) for i in config.inputs), out=absolute(config.out))


def run_ingest(config: IngestConfig) -> IngestSummary:
    import ray

    started = time.perf_counter()
    config = _absolute(config)
    prepared = plan_ingest(config)
    plan, rejections = prepared.plan, list(prepared.rejections)
    formats, duplicates, listed = prepared.formats, prepared.duplicates, prepared.listed
    fs, root = filesystem_and_path(config.out)
    version = version_folder(fs, root, plan_digest(config, prepared.payloads))
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
    remove_unlisted(fs, root, version)  # the card is switched: older versions are no longer read
    summary = IngestSummary(config.out, sum(s["rows"] for s in summaries), len(rejections), duplicates,
                            dict(plan.filtered), dict(Counter(r.reason for r in rejections)),
                            time.perf_counter() - started, listed, pipeline_s, warm_s)
    logger.info(summary.line())
    return summary
