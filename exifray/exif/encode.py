"""The EXIF encoder: raw tag values → the float matrix the EXIF branch sees.

Fitted on the **train split only** (the thesis fitted its scaler on all data before splitting; we do
not). Per tag: numeric values are log10-scaled where they span decades (ExposureTime, ISO), then
standard-scaled, missing values imputed with the train mean (0 after scaling) plus a missing indicator;
Flash becomes 0/1 plus an indicator; categoricals are one-hot over the catalogue's fixed vocabulary
(all zeros plus the indicator when missing). `feature_groups` tells which columns belong to which tag,
so permutation importance can shuffle a tag's columns together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exifray.errors import ConfigError
from exifray.exif.tags import TagKind, get_tag, resolve_tags

_CLIP = 10.0  # standardized values beyond ±10 σ are clipped: one absurd EXIF value must not dominate


def _numeric_view(tag: str, values: np.ndarray) -> np.ndarray:
    """Float copy with NaN for missing; log10 for log-scaled tags (non-positive values count as missing)."""
    spec = get_tag(tag)
    out = np.asarray(values, dtype=np.float64).copy()
    if spec.log_scale:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(out > 0, np.log10(np.where(out > 0, out, 1.0)), np.nan)
    return out


@dataclass(frozen=True)
class ExifEncoder:
    tags: tuple[str, ...]
    stats: Mapping[str, Mapping[str, Any]]

    @classmethod
    def fit(cls, raw: Mapping[str, Sequence[float | None] | np.ndarray], tags: Sequence[str] | None = None
            ) -> ExifEncoder:
        """Fit on raw values of the train split: `raw[tag]` is one value per photo, NaN/None = missing."""
        chosen = resolve_tags(list(tags) if tags is not None else None)
        stats: dict[str, dict[str, object]] = {}
        for tag in chosen:
            spec = get_tag(tag)
            column = _as_float_array(raw.get(tag), _length(raw))
            present = ~np.isnan(column)
            entry: dict[str, object] = {"kind": spec.kind.value,
                                        "coverage": float(present.mean()) if len(column) else 0.0}
            if spec.kind is TagKind.NUMERIC:
                view = _numeric_view(tag, column)
                seen = view[~np.isnan(view)]
                mean = float(seen.mean()) if seen.size else 0.0
                std = float(seen.std()) if seen.size > 1 else 1.0
                entry.update(mean=mean, std=std if std > 1e-12 else 1.0, log_scale=spec.log_scale)
            elif spec.kind is TagKind.FLAG:
                entry.update(fill=float(np.nanmean(column)) if present.any() else 0.0)
            else:
                entry.update(vocabulary=sorted(spec.vocabulary))
            stats[tag] = entry
        return cls(chosen, stats)

    @property
    def width(self) -> int:
        return sum(self._tag_width(tag) for tag in self.tags)

    def _tag_width(self, tag: str) -> int:
        kind = self.stats[tag]["kind"]
        return len(self.stats[tag]["vocabulary"]) + 1 if kind == TagKind.CATEGORICAL.value else 2

    def transform(self, raw: Mapping[str, Sequence[float | None] | np.ndarray]) -> np.ndarray:
        """Encoded float32 matrix (photos × `width`)."""
        n = _length(raw)
        blocks = [self._encode_tag(tag, _as_float_array(raw.get(tag), n)) for tag in self.tags]
        return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((n, 0), np.float32)

    def _encode_tag(self, tag: str, column: np.ndarray) -> np.ndarray:
        entry = self.stats[tag]
        missing = np.isnan(column)
        if entry["kind"] == TagKind.NUMERIC.value:
            view = _numeric_view(tag, column)
            missing = np.isnan(view)
            scaled = np.clip((view - entry["mean"]) / entry["std"], -_CLIP, _CLIP)
            return np.stack([np.where(missing, 0.0, scaled), missing.astype(np.float64)], axis=1)
        if entry["kind"] == TagKind.FLAG.value:
            return np.stack([np.where(missing, entry["fill"], column), missing.astype(np.float64)], axis=1)
        vocabulary = np.asarray(entry["vocabulary"], dtype=np.float64)
        one_hot = (column[:, None] == vocabulary[None, :]).astype(np.float64)
        return np.concatenate([one_hot, missing[:, None].astype(np.float64)], axis=1)

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for tag in self.tags:
            entry = self.stats[tag]
            if entry["kind"] == TagKind.CATEGORICAL.value:
                names += [f"{tag}={code}" for code in entry["vocabulary"]]
            else:
                names.append(tag)
            names.append(f"{tag}_missing")
        return names

    def feature_groups(self) -> dict[str, slice]:
        """Columns per tag, for shuffling one tag's encoding as a block."""
        groups, start = {}, 0
        for tag in self.tags:
            width = self._tag_width(tag)
            groups[tag] = slice(start, start + width)
            start += width
        return groups

    def subset(self, tags: Sequence[str]) -> ExifEncoder:
        """The same fitted statistics restricted to some tags (a trial's `exif_tags`)."""
        chosen = resolve_tags(list(tags))
        absent = [tag for tag in chosen if tag not in self.stats]
        if absent:
            raise ConfigError(f"exif_tags not in the fitted encoder: {absent}; it has {list(self.tags)}")
        return ExifEncoder(chosen, {tag: self.stats[tag] for tag in chosen})

    def to_dict(self) -> dict[str, object]:
        return {"tags": list(self.tags), "stats": {tag: dict(self.stats[tag]) for tag in self.tags}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExifEncoder:
        return cls(tuple(data["tags"]), {tag: dict(data["stats"][tag]) for tag in data["tags"]})


def _length(raw: Mapping[str, Any]) -> int:
    lengths = {len(values) for values in raw.values() if values is not None}
    if len(lengths) > 1:
        raise ValueError(f"EXIF columns differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _as_float_array(values: Sequence[float | None] | np.ndarray | None, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64) \
        if not isinstance(values, np.ndarray) else values.astype(np.float64)
