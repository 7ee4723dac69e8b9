"""Choosing tags from a model's probabilities: one policy, shared by `predict`, `organize` and `serve`.

    policy = make_policy(multi_label=True, threshold="0.1")            # every class with p >= 0.1
    policy = make_policy(multi_label=True, threshold="calibrated", calibrated=bundle_thresholds, top_k=3)
    policy = make_policy(multi_label=False)                            # the scene rule (below)
    policy = make_policy(multi_label=False, policy="top1", min_confidence=0.6)
    policy.tags(probabilities, classes)                                # one list of tags per photo

Multi-label models: a threshold per class (one number for all, default 0.1 as the photo organiser that inspired
this; or `calibrated`, the per-class thresholds `export-best` fits on the validation split, best F1 per class),
optionally the `top_k` most probable of those; a photo can get several tags or none. Single-label models, by
default the rule of the scene-tagging API that inspired this: the top class alone when its probability is above
0.9, else the top two when together they are above 0.5, else `Unknown`. `top1` is the alternative: the top class
when its probability reaches `min_confidence`, else `Unknown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np

from exifray.errors import ConfigError

UNKNOWN = "Unknown"
DEFAULT_THRESHOLD = 0.1
POLICIES = ("scene", "top1", "threshold")


@dataclass(frozen=True)
class TagPolicy:
    kind: Literal["scene", "top1", "threshold"]
    thresholds: tuple[float, ...] | float = DEFAULT_THRESHOLD  # threshold: one for all classes, or one per class
    top_k: int | None = None
    single: float = 0.9  # scene: top-1 above this → that tag alone
    pair: float = 0.5  # scene: top-1 + top-2 above this → both
    min_confidence: float = 0.0  # top1

    def describe(self) -> dict[str, object]:
        """What a prediction row records about how its tags were chosen."""
        if self.kind == "scene":
            return {"policy": "scene", "single": self.single, "pair": self.pair}
        if self.kind == "top1":
            return {"policy": "top1", "min_confidence": self.min_confidence}
        return {"policy": "threshold", "thresholds": self.thresholds, "top_k": self.top_k}

    def tags(self, probabilities: np.ndarray, classes: Sequence[str]) -> list[list[str]]:
        """One list of tags per row of `probabilities` (photos × classes)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
            raise ValueError(f"probabilities of shape {probabilities.shape} do not match {len(classes)} classes")
        return [self._one(row, classes) for row in probabilities]

    def _one(self, row: np.ndarray, classes: Sequence[str]) -> list[str]:
        order = np.argsort(-row, kind="stable")
        if self.kind == "threshold":
            limits = np.broadcast_to(np.asarray(self.thresholds, dtype=np.float64), row.shape)
            chosen = [int(i) for i in order if row[i] >= limits[i]]
            return [classes[i] for i in chosen[: self.top_k]]
        first = int(order[0])
        if self.kind == "top1":
            return [classes[first]] if row[first] >= self.min_confidence else [UNKNOWN]
        if row[first] > self.single:
            return [classes[first]]
        if len(order) > 1 and row[first] + row[int(order[1])] > self.pair:
            return [classes[first], classes[int(order[1])]]
        return [UNKNOWN]


class PolicyFlags(TypedDict, total=False):
    """The command line's tag-policy flags by name: `make_policy`'s keywords (predict, organize, serve)."""

    policy: str | None
    threshold: str | float | None
    top_k: int | None
    min_confidence: float | None
    single: float
    pair: float


def make_policy(multi_label: bool, *, policy: str | None = None, threshold: str | float | None = None,
                top_k: int | None = None, min_confidence: float | None = None,
                calibrated: Sequence[float] | None = None, single: float = 0.9, pair: float = 0.5) -> TagPolicy:
    """The policy for a bundle from the command line's flags (None: the default)."""
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
    if multi_label:
        if policy not in (None, "threshold"):
            raise ConfigError(f"a multi-label model tags by threshold; --policy {policy} is for single-label models")
        if threshold == "calibrated":
            if calibrated is None:
                raise ConfigError("--threshold calibrated needs per-class thresholds in the bundle; re-export it "
                                  "with `exifray export-best` (it fits them on the validation split)")
            return TagPolicy("threshold", tuple(float(t) for t in calibrated), top_k)
        value = DEFAULT_THRESHOLD if threshold is None else _fraction(threshold, "--threshold")
        return TagPolicy("threshold", value, top_k)
    if threshold is not None or top_k is not None:
        raise ConfigError("--threshold and --top-k are for multi-label models; this model is single-label "
                          "(use --policy top1 --min-confidence P)")
    if policy in (None, "scene"):
        if min_confidence is not None:
            raise ConfigError("--min-confidence goes with --policy top1")
        return TagPolicy("scene", single=_fraction(single, "single"), pair=_fraction(pair, "pair"))
    if policy == "top1":
        return TagPolicy("top1", min_confidence=_fraction(min_confidence or 0.0, "--min-confidence"))
    raise ConfigError(f"--policy must be one of scene, top1 (single-label models), got {policy!r}")


def _fraction(value: str | float, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1] or 'calibrated', got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return number


def fit_thresholds(targets: np.ndarray, probabilities: np.ndarray, default: float = 0.5) -> list[float]:
    """Per class, the threshold with the best F1 on these (validation) photos: among the photos' own
    probabilities, the one whose `p >= t` rule scores best (ties: the higher threshold). A class without a
    positive photo keeps `default`."""
    truth = np.asarray(targets) > 0.5
    probabilities = np.asarray(probabilities, dtype=np.float64)
    fitted = []
    for column in range(truth.shape[1]):
        positives = truth[:, column]
        if not positives.any():
            fitted.append(default)
            continue
        scores = probabilities[:, column]
        best, best_f1 = default, -1.0
        for candidate in np.unique(scores)[::-1]:
            predicted = scores >= candidate
            tp = float((predicted & positives).sum())
            f1 = 2 * tp / (predicted.sum() + positives.sum())
            if f1 > best_f1:
                best, best_f1 = float(candidate), f1
        fitted.append(best)
    return fitted
