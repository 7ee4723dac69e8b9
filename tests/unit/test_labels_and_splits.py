from __future__ import annotations

from collections import Counter

import pytest

from exifray.config import IngestConfig
from exifray.data.ingest import merge_records, plan_labels, split_for
from exifray.data.sources import SourceRecord, concepts_from_labels
from exifray.errors import DataError


def _record(photo_id: str, *labels: str) -> SourceRecord:
    return SourceRecord(photo_id, concepts_from_labels(list(labels)), f"{photo_id}.jpg", "embedded", None, "test")


def _config(**settings: object) -> IngestConfig:
    return IngestConfig(inputs=("x",), out="y", **settings)  # type: ignore[arg-type]


def test_split_is_a_stable_function_of_id_and_seed() -> None:
    fractions = (0.7, 0.2, 0.1)
    splits = Counter(split_for(str(i), 0, fractions) for i in range(20000))
    assert splits["train"] / 20000 == pytest.approx(0.7, abs=0.015)
    assert splits["test"] / 20000 == pytest.approx(0.1, abs=0.01)
    assert split_for("123", 0, fractions) == split_for("123", 0, fractions)
    assert [split_for(str(i), 0, fractions) for i in range(50)] != [split_for(str(i), 1, fractions) for i in range(50)]


def test_merge_unions_labels_of_repeated_ids() -> None:
    records, duplicates = merge_records([_record("2", "moving", "boat"), _record("1", "static", "car"),
                                         _record("2", "moving", "car")])
    assert duplicates == 1 and [r.photo_id for r in records] == ["1", "2"]
    assert records[1].concepts == {("moving", "boat"), ("moving", "car")}


def test_single_label_mode_quarantines_ambiguous_photos() -> None:
    records, _ = merge_records([_record("1", "indoor", "kitchen"), _record("1", "outdoor", "beach"),
                                _record("2", "indoor", "office"), _record("3", "outdoor", "beach")])
    plan = plan_labels(records, _config(label_mode="single"))
    assert plan.labels == {"2": ["indoor"], "3": ["outdoor"]}
    assert [(r.photo_id, r.reason) for r in plan.rejections] == [("1", "ambiguous_labels")]
    assert plan_labels(records, _config()).label_mode == "multi"


def test_sub_level_names_classes_by_super_and_skips_super_only_photos() -> None:
    records, _ = merge_records([_record("1", "moving", "boat"), _record("2", "static", "boat"), _record("3", "moving")])
    plan = plan_labels(records, _config(label_level="sub"))
    assert plan.classes == ["moving/boat", "static/boat"] and plan.filtered == {"no_sub_concept": 1}
    assert plan.hierarchy == {"moving": ["moving/boat"], "static": ["static/boat"]}


def test_concept_filter_keeps_named_classes_and_rejects_unknown_ones() -> None:
    records, _ = merge_records([_record("1", "indoor"), _record("2", "outdoor"), _record("3", "night")])
    plan = plan_labels(records, _config(concepts=("indoor", "outdoor")))
    assert plan.classes == ["indoor", "outdoor"] and plan.filtered == {"concept_filter": 1}
    with pytest.raises(DataError, match="'underwater'"):
        plan_labels(records, _config(concepts=("underwater",)))
