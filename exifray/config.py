"""Frozen, validated configurations. They travel to Ray workers as plain data (`to_dict`/`from_tune`).

Validation happens up front and every message names the setting and the bad value.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from exifray.errors import ConfigError
from exifray.exif.tags import TAG_NAMES, resolve_tags

MODALITIES = ("image", "exif", "fusion")
LABEL_LEVELS = ("super", "sub")
LABEL_MODES = ("auto", "single", "multi")
INPUT_FORMATS = ("auto", "crawl", "thesis", "mirflickr", "folder")
DEFAULT_COUNTRY = "DEU"  # CodeCarbon's grid-intensity country when the config does not name one


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class TrialConfig:
    """One training configuration: the settings a sweep samples, plus fixed run settings."""

    modality: str = "fusion"
    backbone: str = "TestTinyCNN"
    weights: str = "auto"  # "auto" (imagenet where the backbone has it, else none) | imagenet | none | PATH
    image_size: int | None = None  # None: the dataset's first size
    fine_tune_layers: int = 0
    exif_tags: tuple[str, ...] = TAG_NAMES
    fusion_width: int = 64
    learning_rate: float = 1e-3
    fine_tune_learning_rate_factor: float = 0.1
    batch_size: int = 32
    epochs: int = 10  # phase 1: head (and EXIF branch) with the backbone frozen
    fine_tune_epochs: int = 5  # phase 2: top `fine_tune_layers` unfrozen, BatchNorm kept frozen
    dropout: float = 0.2
    augment: bool = False
    early_stopping_patience: int = 3
    seed: int = 0
    country: str = DEFAULT_COUNTRY
    threads: int | None = None  # TF intra/inter-op threads; None: the CPUs Ray gave the trial

    def __post_init__(self) -> None:
        _check(self.modality in MODALITIES, f"modality must be one of {MODALITIES}, got {self.modality!r}")
        object.__setattr__(self, "exif_tags", resolve_tags(self.exif_tags))
        _check(self.image_size is None or self.image_size >= 8, f"image_size must be >= 8, got {self.image_size!r}")
        _check(self.fine_tune_layers >= 0, f"fine_tune_layers must be >= 0, got {self.fine_tune_layers!r}")
        _check(self.fusion_width > 0, f"fusion_width must be > 0, got {self.fusion_width!r}")
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate!r}")
        _check(0 < self.fine_tune_learning_rate_factor <= 1,
               f"fine_tune_learning_rate_factor must be in (0, 1], got {self.fine_tune_learning_rate_factor!r}")
        _check(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size!r}")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs!r}")
        _check(self.fine_tune_epochs >= 0, f"fine_tune_epochs must be >= 0, got {self.fine_tune_epochs!r}")
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}")
        _check(self.early_stopping_patience >= 1,
               f"early_stopping_patience must be >= 1, got {self.early_stopping_patience!r}")
        _check(len(self.country) == 3 and self.country.isalpha(),
               f"country must be an ISO 3166 alpha-3 code such as 'DEU', got {self.country!r}")
        _check(self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads!r}")

    @property
    def uses_image(self) -> bool:
        return self.modality in ("image", "fusion")

    @property
    def uses_exif(self) -> bool:
        return self.modality in ("exif", "fusion")

    @classmethod
    def from_tune(cls, params: Mapping[str, Any]) -> TrialConfig:
        """Build from a flat settings dict (a Tune `config`, a JSON file, CLI flags); unknown keys fail."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            close = {key: difflib.get_close_matches(key, known, n=1) for key in unknown}
            hints = ", ".join(f"{key!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for key, c in close.items())
            raise ConfigError(f"unknown trial setting(s): {hints}")
        values = {key: _coerce(known[key], value) for key, value in params.items() if value is not None
                  or key in ("image_size", "threads")}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["exif_tags"] = list(self.exif_tags)
        return data


def _coerce(spec: dataclasses.Field[Any], value: Any) -> Any:
    """Tune and YAML hand over numpy scalars and strings; turn them into the field's type."""
    if spec.name == "exif_tags":
        return value
    annotation = str(spec.type)
    try:
        if annotation.startswith("int"):
            return None if value is None else int(value)
        if annotation == "float":
            return float(value)
        if annotation == "bool":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if annotation == "str":
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{spec.name} must be {annotation}, got {value!r}") from exc
    return value


@dataclass(frozen=True)
class IngestConfig:
    inputs: tuple[str, ...]
    out: str
    sizes: tuple[int, ...] = (50, 150)
    label_level: Literal["super", "sub"] = "super"
    label_mode: Literal["auto", "single", "multi"] = "auto"
    concepts: tuple[str, ...] = ()  # keep only these classes (after choosing the level); empty = all
    input_format: str = "auto"
    split_fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 0
    shard_size: int = 512
    max_pixels: int = 50_000_000  # larger images are rejected as decompression bombs
    max_file_bytes: int = 50 * 1024 * 1024
    address: str | None = None
    num_cpus: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(len(self.inputs) > 0, "ingest needs at least one input directory")
        _check(len(self.sizes) > 0 and all(8 <= s <= 1024 for s in self.sizes),
               f"sizes must be image sizes in pixels between 8 and 1024, got {self.sizes!r}")
        _check(len(set(self.sizes)) == len(self.sizes), f"sizes must not repeat, got {self.sizes!r}")
        _check(self.label_level in LABEL_LEVELS, f"labels must be one of {LABEL_LEVELS}, got {self.label_level!r}")
        _check(self.label_mode in LABEL_MODES, f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        _check(self.input_format in INPUT_FORMATS,
               f"format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        _check(len(self.split_fractions) == 3 and all(f >= 0 for f in self.split_fractions)
               and abs(sum(self.split_fractions) - 1.0) < 1e-6 and self.split_fractions[0] > 0,
               f"split fractions must be three non-negative numbers summing to 1, got {self.split_fractions!r}")
        _check(self.shard_size >= 1, f"shard_size must be >= 1, got {self.shard_size!r}")
        _check(self.max_pixels >= 1, f"max_pixels must be >= 1, got {self.max_pixels!r}")
