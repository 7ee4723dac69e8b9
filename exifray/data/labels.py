"""Planning an ingest's labels and splits on the driver (pure, no decoding): records merged by photo id, the
classes at the chosen label level, each photo's split from a hash of its id and the seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exifray.config import IngestConfig
from exifray.data.sources import (
    Rejection,
    SourceRecord,
)
from exifray.errors import DataError

if TYPE_CHECKING:
    pass


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
