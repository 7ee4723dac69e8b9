"""Publishing a DATASET DIR atomically: each run's shards under `versions/<UTC stamp>-<plan digest>/`, the
digest that lets an interrupted run continue its own version, the card (`dataset.json`, written last, listing
the shard files) and the removal of versions the card no longer lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from exifray import schema
from exifray.config import IngestConfig
from exifray.data.card import CARD_VERSION, DatasetCard, ShardFile, dataset_id
from exifray.data.sources import (
    Rejection,
    SourceRecord,
)
from exifray.exif.encode import ExifEncoder
from exifray.exif.tags import CATALOGUE, TAG_NAMES
from exifray.fsutil import is_uri, read_bytes_or_none
from exifray.version import __version__

if TYPE_CHECKING:
    import pyarrow.fs as pafs

from exifray.data.labels import LabelPlan, split_for
from exifray.data.shard import decode_params

logger = logging.getLogger(__name__)

VERSIONS_DIR = "versions"  # DATASET DIR/versions/<UTC stamp>-<plan digest>/shards/part-NNNNN.parquet


# --- the DATASET DIR's versions --------------------------------------------------------------------------------

def join_location(location: str, relative: str) -> str:
    return f"{str(location).rstrip('/')}/{relative}"


def shard_relative(version: str, index: int) -> str:
    return f"{VERSIONS_DIR}/{version}/{schema.SHARDS_DIR}/part-{index:05d}.parquet"


def plan_digest(config: IngestConfig, payloads: list[str]) -> str:
    """What decides a version's shards: the records of each shard and the decoding settings."""
    digest = hashlib.sha256(json.dumps([list(config.sizes), config.max_pixels, config.max_file_bytes,
                                        CARD_VERSION]).encode())
    for payload in payloads:
        digest.update(hashlib.sha256(payload.encode()).digest())
    return digest.hexdigest()[:12]


def listed_version(fs: pafs.FileSystem, root: str) -> str | None:
    """The version the current card lists (None: no card, or one from before versions)."""
    data = read_bytes_or_none(fs, f"{root}/{schema.DATASET_CARD}")
    if data is None:
        return None
    shards = json.loads(data).get("shards") or []
    parts = PurePosixPath(shards[0]["path"]).parts if shards else ()
    return parts[1] if len(parts) > 2 and parts[0] == VERSIONS_DIR else None


def version_folder(fs: pafs.FileSystem, root: str, digest: str) -> str:
    """The version folder to write: an unfinished one of the same plan (an interrupted ingest: its written shards
    are skipped), else a new one. The version the card lists is never written into."""
    import pyarrow.fs as pafs

    listed = listed_version(fs, root)
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


def remove_unlisted(fs: pafs.FileSystem, root: str, version: str) -> None:
    """After the card lists `version`: every other version folder, and the shards/ folder of the layout from
    before versions."""
    import pyarrow.fs as pafs

    for entry in fs.get_file_info(pafs.FileSelector(f"{root}/{VERSIONS_DIR}", allow_not_found=True)):
        if entry.type == pafs.FileType.Directory and PurePosixPath(entry.path).name != version:
            fs.delete_dir(entry.path)
    legacy = f"{root}/{schema.SHARDS_DIR}"
    if fs.get_file_info(legacy).type == pafs.FileType.Directory:
        fs.delete_dir(legacy)


def record_payload(record: SourceRecord, plan: LabelPlan, config: IngestConfig) -> dict[str, object]:
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
