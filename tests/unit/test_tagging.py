"""The tag policy shared by predict, organize and serve, and per-class threshold fitting."""

from __future__ import annotations

import numpy as np
import pytest

from exifray.errors import ConfigError
from exifray.tagging import UNKNOWN, fit_thresholds, make_policy

CLASSES = ["beach", "city", "forest"]


def test_scene_rule_one_tag_two_tags_or_unknown() -> None:
    policy = make_policy(multi_label=False)
    probabilities = np.array([[0.95, 0.03, 0.02],   # top-1 above 0.9 → alone
                              [0.30, 0.45, 0.25],   # top two sum 0.75 > 0.5 → both, most probable first
                              [0.34, 0.33, 0.33]])  # 0.67 > 0.5 → both
    assert policy.tags(probabilities, CLASSES) == [["beach"], ["city", "beach"], ["beach", "city"]]
    strict = make_policy(multi_label=False, single=0.99, pair=0.9)
    assert strict.tags(probabilities, CLASSES) == [["beach", "city"], [UNKNOWN], [UNKNOWN]]


def test_top1_with_minimum_confidence() -> None:
    policy = make_policy(multi_label=False, policy="top1", min_confidence=0.5)
    assert policy.tags(np.array([[0.6, 0.3, 0.1], [0.4, 0.35, 0.25]]), CLASSES) == [["beach"], [UNKNOWN]]


def test_multi_label_threshold_top_k_and_calibrated() -> None:
    probabilities = np.array([[0.5, 0.2, 0.05], [0.01, 0.02, 0.03]])
    assert make_policy(True).tags(probabilities, CLASSES) == [["beach", "city"], []]  # default 0.1; none is fine
    assert make_policy(True, threshold="0.3").tags(probabilities, CLASSES) == [["beach"], []]
    assert make_policy(True, top_k=1).tags(probabilities, CLASSES) == [["beach"], []]
    calibrated = make_policy(True, threshold="calibrated", calibrated=[0.9, 0.15, 0.02])
    assert calibrated.tags(probabilities, CLASSES) == [["city", "forest"], ["forest"]]


@pytest.mark.parametrize(("multi", "flags", "message"), [
    (True, {"threshold": "calibrated"}, "re-export it"),
    (True, {"threshold": "1.5"}, r"\[0, 1\]"),
    (True, {"threshold": "high"}, "number"),
    (True, {"policy": "top1"}, "single-label"),
    (False, {"threshold": "0.2"}, "multi-label models"),
    (False, {"policy": "best"}, "--policy"),
    (True, {"top_k": 0}, "--top-k"),
])
def test_bad_policy_flags_are_named(multi: bool, flags: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_policy(multi, **flags)


def test_fit_thresholds_picks_the_best_f1_per_class() -> None:
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probabilities = np.array([[0.8, 0.1], [0.3, 0.2], [0.2, 0.6], [0.25, 0.7]])
    # class 0: t = 0.3 catches both positives and nothing else (F1 1.0); class 1: t = 0.6 gives F1 2/3
    assert fit_thresholds(targets, probabilities) == pytest.approx([0.3, 0.6])
    assert fit_thresholds(np.zeros((2, 1)), np.array([[0.2], [0.9]])) == [0.5]  # no positive: the default


def test_the_command_line_flags_reach_the_policy() -> None:
    from exifray.cli import build_parser
    from exifray.cli_use import policy_flags

    args = build_parser().parse_args(["predict", "bundle", "photos", "--out", "t.jsonl", "--scene-single", "0.99",
                                      "--scene-pair", "0.9"])
    policy = make_policy(False, **policy_flags(args))
    assert (policy.kind, policy.single, policy.pair) == ("scene", 0.99, 0.9)
    args = build_parser().parse_args(["organize", "bundle", "photos", "--out", "albums", "--threshold", "calibrated",
                                      "--top-k", "2"])
    policy = make_policy(True, calibrated=[0.2, 0.3, 0.4], **policy_flags(args))
    assert (policy.thresholds, policy.top_k) == ((0.2, 0.3, 0.4), 2)
