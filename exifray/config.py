"""Frozen, validated configurations: one dataclass per command's settings, and the only place their defaults,
choices and help live (the CLI reads them from here). They travel to Ray workers as plain data.

Validation happens up front and every message names the setting and the bad value. Values from YAML, Tune
and the command line are checked against each field's type (pydantic, lax mode: `"16"` and `16.0` are 16,
`16.7`, `True` and `"maybe"` are errors, never silently truncated).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal, TypeVar

from exifray import schema
from exifray.errors import ConfigError, require
from exifray.exif.tags import TAG_NAMES, resolve_tags

MODALITIES: Final = schema.MODALITIES
LABEL_LEVELS: Final = ("super", "sub")
LABEL_MODES: Final = ("auto", "single", "multi")
INPUT_FORMATS: Final = ("auto", "crawl", "thesis", "mirflickr", "folder")
CRAWL_MODES: Final = ("group", "search", "photos")
FLICKR_SIZES: Final = ("", "s", "q", "t", "m", "n", "w", "z", "c", "b", "h", "k", "3k", "4k", "f", "5k", "6k", "o")
DEFAULT_API_URL: Final = "https://www.flickr.com/services/rest/"
DEFAULT_STATIC_URL: Final = "https://live.staticflickr.com"
PRECISIONS: Final = ("float32", "mixed_float16", "mixed_bfloat16")
FEATURE_CACHE_MODES: Final = ("auto", "off")
DEFAULT_COUNTRY: Final = "DEU"  # CodeCarbon's grid-intensity country when the config does not name one

T = TypeVar("T")


def setting(default: T, help: str, choices: tuple[object, ...] | None = None) -> T:
    """A dataclass field with its command-line help (and choices) beside its default."""
    return field(default=default, metadata={"help": help, "choices": choices})


def field_of(cls: type, name: str) -> dataclasses.Field[Any]:
    """A config dataclass's field by name (its default and metadata are what the CLI shows)."""
    return {f.name: f for f in fields(cls)}[name]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(cls: type, name: str, value: object) -> Any:
    """`value` as the type of `cls.name`, or a ConfigError naming the setting and the value."""
    from pydantic import TypeAdapter, ValidationError

    expected = _type_hints(cls)[name]
    if isinstance(value, bool) and expected not in (bool, bool | None):
        # YAML reads an unquoted `off` / `on` (also `no` / `yes`) as a boolean: where the setting has the word
        # among its choices, the boolean means it (`feature_cache: off` as the docs write it)
        word = yaml_boolean_choice(cls, name, value)
        if word is not None:
            return word
        choices = field_of(cls, name).metadata.get("choices")
        if choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r} (YAML reads an unquoted "
                              f"on/off/yes/no as a boolean)")
        raise ConfigError(f"{name} must be {_type_name(expected)}, got {value!r}")
    try:
        return TypeAdapter(expected).validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ConfigError(f"{name} must be {_type_name(expected)}, got {value!r} ({reason})") from None


def yaml_boolean_choice(cls: type, name: str, value: bool) -> str | None:
    """`off` for False, `on` for True, when `cls.name` offers that word among its choices; otherwise None."""
    word = "on" if value else "off"
    return word if word in (field_of(cls, name).metadata.get("choices") or ()) else None


def _type_name(annotation: object) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


@dataclass(frozen=True)
class TrialConfig:
    """One training configuration: the settings a sweep samples, plus fixed run settings."""

    modality: str = setting("fusion", "what the model sees", choices=MODALITIES)
    backbone: str = setting("TestTinyCNN", "registered backbone (see `exifray backbones`)")
    weights: str = setting("auto", "auto (imagenet where the backbone has it, else none) | imagenet | none | PATH "
                                   "to a weights file")
    image_size: int | None = setting(None, "one of the dataset's sizes (default: its first)")
    fine_tune_layers: int = setting(0, "top backbone layers unfrozen in phase 2")
    exif_tags: tuple[str, ...] = setting(TAG_NAMES, "comma-separated EXIF tags (default: all 14)")
    fusion_width: int = setting(64, "fusion projection width")
    learning_rate: float = setting(1e-3, "phase-1 learning rate")
    fine_tune_learning_rate_factor: float = setting(0.1, "phase-2 learning rate as a factor of phase 1's")
    batch_size: int = setting(32, "photos per batch")
    epochs: int = setting(10, "phase-1 epochs: head (and EXIF branch) with the backbone frozen")
    fine_tune_epochs: int = setting(5, "phase-2 epochs: top fine_tune_layers unfrozen, BatchNorm kept frozen")
    dropout: float = setting(0.2, "dropout before the head")
    augment: bool = setting(False, "random flips, rotations and translations of the training images")
    early_stopping_patience: int = setting(3, "early-stopping patience on val_loss, per phase")
    seed: int = setting(0, "weights, shuffling and augmentation seed")
    country: str = setting(DEFAULT_COUNTRY, "ISO 3166 alpha-3 country for CodeCarbon's grid intensity")
    threads: int | None = setting(None, "TensorFlow threads (default: the CPUs Ray gave the trial)")
    precision: str = setting("float32", "Keras dtype policy; outputs stay float32", choices=PRECISIONS)
    jit_compile: bool = setting(False, "compile training steps with XLA")
    feature_cache: str = setting("auto", "train the frozen-backbone head phase on cached pooled features (auto) or "
                                         "through the backbone every epoch (off)", choices=FEATURE_CACHE_MODES)

    def __post_init__(self) -> None:
        require(self.modality in MODALITIES, f"modality must be one of {MODALITIES}, got {self.modality!r}")
        object.__setattr__(self, "exif_tags", resolve_tags(self.exif_tags))
        require(self.image_size is None or self.image_size >= 8, f"image_size must be >= 8, got {self.image_size!r}")
        require(self.fine_tune_layers >= 0, f"fine_tune_layers must be >= 0, got {self.fine_tune_layers!r}")
        require(self.fusion_width > 0, f"fusion_width must be > 0, got {self.fusion_width!r}")
        require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate!r}")
        require(0 < self.fine_tune_learning_rate_factor <= 1,
                f"fine_tune_learning_rate_factor must be in (0, 1], got {self.fine_tune_learning_rate_factor!r}")
        require(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size!r}")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs!r}")
        require(self.fine_tune_epochs >= 0, f"fine_tune_epochs must be >= 0, got {self.fine_tune_epochs!r}")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}")
        require(self.early_stopping_patience >= 1,
                f"early_stopping_patience must be >= 1, got {self.early_stopping_patience!r}")
        require(len(self.country) == 3 and self.country.isalpha(),
                f"country must be an ISO 3166 alpha-3 code such as 'DEU', got {self.country!r}")
        require(self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads!r}")
        require(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        require(self.feature_cache in FEATURE_CACHE_MODES,
                f"feature_cache must be one of {FEATURE_CACHE_MODES}, got {self.feature_cache!r}")

    @property
    def uses_image(self) -> bool:
        return schema.uses_image(self.modality)

    @property
    def uses_exif(self) -> bool:
        return schema.uses_exif(self.modality)

    @classmethod
    def from_tune(cls, params: Mapping[str, Any]) -> TrialConfig:
        """Build from a flat settings dict (a Tune `config`, a JSON file, CLI flags); unknown keys and values of
        the wrong type fail."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            close = {key: difflib.get_close_matches(key, known, n=1) for key in unknown}
            hints = ", ".join(f"{key!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for key, c in close.items())
            raise ConfigError(f"unknown trial setting(s): {hints}")
        values = {key: value if key == "exif_tags" else coerce(cls, key, value) for key, value in params.items()
                  if value is not None or key in ("image_size", "threads")}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["exif_tags"] = list(self.exif_tags)
        return data


@dataclass(frozen=True)
class IngestConfig:
    inputs: tuple[str, ...]
    out: str
    sizes: tuple[int, ...] = setting((50, 150), "image sizes in px, comma-separated")
    label_level: Literal["super", "sub"] = setting("super", "class level", choices=LABEL_LEVELS)
    label_mode: Literal["auto", "single", "multi"] = setting(
        "auto", "single-label (softmax) or multi-label (sigmoid); auto: multi when a photo has several classes",
        choices=LABEL_MODES)
    concepts: tuple[str, ...] = setting((), "keep only these classes, comma-separated (after choosing the level)")
    input_format: str = setting("auto", "input layout (auto: detect)", choices=INPUT_FORMATS)
    split_fractions: tuple[float, float, float] = setting((0.7, 0.2, 0.1), "train,val,test fractions")
    seed: int = setting(0, "split seed")
    shard_size: int = setting(512, "photos per Parquet shard")
    max_pixels: int = setting(50_000_000, "reject larger images as decompression bombs")
    max_file_bytes: int = 50 * 1024 * 1024
    address: str | None = setting(None, "Ray cluster address (default: start Ray in-process)")
    num_cpus: int | None = setting(None, "CPUs for an in-process Ray (default: all)")
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(len(self.inputs) > 0, "ingest needs at least one input directory")
        require(len(self.sizes) > 0 and all(8 <= s <= 1024 for s in self.sizes),
                f"sizes must be image sizes in pixels between 8 and 1024, got {self.sizes!r}")
        require(len(set(self.sizes)) == len(self.sizes), f"sizes must not repeat, got {self.sizes!r}")
        require(self.label_level in LABEL_LEVELS, f"labels must be one of {LABEL_LEVELS}, got {self.label_level!r}")
        require(self.label_mode in LABEL_MODES, f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        require(self.input_format in INPUT_FORMATS,
                f"format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        require(len(self.split_fractions) == 3 and all(f >= 0 for f in self.split_fractions)
                and abs(sum(self.split_fractions) - 1.0) < 1e-6 and self.split_fractions[0] > 0,
                f"split fractions must be three non-negative numbers summing to 1, got {self.split_fractions!r}")
        require(self.shard_size >= 1, f"shard_size must be >= 1, got {self.shard_size!r}")
        require(self.max_pixels >= 1, f"max_pixels must be >= 1, got {self.max_pixels!r}")


@dataclass(frozen=True)
class ClientConfig:
    """The Flickr HTTP client: endpoints, connections, rate limit, timeouts, retries, size bounds."""

    api_url: str = setting(DEFAULT_API_URL, "REST endpoint")
    static_url: str = setting(DEFAULT_STATIC_URL, "image host")
    concurrency: int = setting(8, "open connections at most")
    rate_limit: float = setting(3500.0, "requests per hour, API and images together (Flickr allows 3600 per key)")
    connect_timeout_s: float = 10.0
    read_timeout_s: float = setting(30.0, "seconds to wait for data on a connection before retrying")
    max_attempts: int = setting(5, "tries per request before giving up")
    backoff_initial_s: float = setting(1.0, "first retry delay in seconds, doubled per attempt with jitter, at most "
                                            "60; a 429's Retry-After wins when longer")
    backoff_max_s: float = 60.0
    max_image_bytes: int = 50 * 1024 * 1024
    max_json_bytes: int = 10 * 1024 * 1024

    def __post_init__(self) -> None:
        require(self.concurrency >= 1, f"concurrency must be >= 1, got {self.concurrency!r}")
        require(self.rate_limit > 0, f"rate_limit must be > 0 requests per hour, got {self.rate_limit!r}")
        require(self.max_attempts >= 1, f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("api_url", "static_url"):
            value = getattr(self, name)
            require(value.startswith(("http://", "https://")), f"{name} must be an http(s) URL, got {value!r}")


@dataclass(frozen=True)
class CrawlConfig:
    mode: str
    target: str  # group id, search text, or metadata file path
    out: str
    exif: bool = setting(False, "also save flickr.photos.getExif bodies")
    require_tags: tuple[str, ...] = setting((), "keep only photos whose EXIF has all these tags (needs --exif)")
    size: str = setting("", "Flickr size key: s q t m n w z c b h k 3k 4k f 5k 6k o (empty = 500 px)")
    per_page: int = setting(100, "photos per listing page, max 500")
    start_page: int = setting(1, "first listing page")
    page_limit: int | None = setting(None, "listing pages to read (default: all)")
    filter_tag: str | None = setting(None, "group mode: only photos with this tag")
    labels: tuple[str, ...] = setting((), "labels for group/search photos and list metadata files, comma-separated "
                                          "(e.g. indoor,kitchen; default for a list file: its name, as in the "
                                          "thesis' indoor,kitchen.json)")
    metadata_only: bool = setting(False, "write the id list, download nothing")
    metadata_out: str | None = setting(None, "with --metadata-only: the thesis-format JSON file")
    client: ClientConfig = field(default_factory=ClientConfig)
    progress_every_s: float = setting(30.0, "seconds between progress log lines when stderr is not a terminal (a "
                                            "terminal gets a progress bar)")

    def __post_init__(self) -> None:
        require(self.mode in CRAWL_MODES, f"mode must be one of {CRAWL_MODES}, got {self.mode!r}")
        require(bool(self.target), f"{self.mode} needs a {'file' if self.mode == 'photos' else 'value'}")
        require(self.size in FLICKR_SIZES, f"size must be one of Flickr's size keys "
                                           f"{' '.join(repr(s) for s in FLICKR_SIZES)}, got {self.size!r}")
        require(1 <= self.per_page <= 500, f"per_page must be 1..500, got {self.per_page!r}")
        require(self.start_page >= 1, f"start_page must be >= 1, got {self.start_page!r}")
        require(self.page_limit is None or self.page_limit >= 1, f"page_limit must be >= 1, got {self.page_limit!r}")
        require(not self.metadata_only or bool(self.metadata_out), "--metadata-only needs --metadata-out FILE")
        require(not self.require_tags or self.exif, "--require-tags needs --exif (the tags come from getExif)")
        if self.require_tags:
            object.__setattr__(self, "require_tags", resolve_tags(list(self.require_tags)))


# --- how a sweep runs (as opposed to what it searches: space.SearchSpace) -----------------------------------

def _section(name: str, data: object, keys: tuple[str, ...]) -> dict[str, Any]:
    """A mapping section of a space file (`resources:`, `data:`) with only the keys it allows."""
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must be a mapping with {' and '.join(keys)}, got {data!r}")
    unknown = sorted(set(data) - set(keys))
    require(not unknown, f"{name}.{unknown[0] if unknown else ''}: unknown key; allowed: {', '.join(keys)}")
    return data


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        return max(1, math.ceil(self.cpus))

    @classmethod
    def from_yaml(cls, data: object) -> Resources:
        data = _section("resources", data, ("cpus", "gpus"))
        cpus, gpus = data.get("cpus", 1), data.get("gpus", 0)
        require(isinstance(cpus, int | float) and not isinstance(cpus, bool) and cpus > 0,
                f"resources.cpus must be a number > 0, got {cpus!r}")
        require(isinstance(gpus, int | float) and not isinstance(gpus, bool) and gpus >= 0,
                f"resources.gpus must be a number >= 0 (fractions share a GPU), got {gpus!r}")
        require(gpus <= 1 or float(gpus).is_integer(), f"resources.gpus above 1 must be whole GPUs, got {gpus!r}")
        return cls(cpus=float(cpus), gpus=float(gpus))


STREAM_MODES: Final = ("auto", "always", "never")
# Warm workers' retirement defaults, from measuring a worker's memory (docs/training.md): over 39 mixed trials it grew
# about 76 MiB per backbone-building trial with no plateau, so 1 GiB retires it after ~14 such trials; in the cached
# 200-trial benchmark a worker grew at most 852 MiB over 50 trials, so the count bounds only what memory does not show.
MAX_TRIALS_PER_WORKER: Final = 50
WORKER_GROWTH_MB: Final = 1024.0


@dataclass(frozen=True)
class DataConfig:
    """How trials get their pixels: from the object store (the whole dataset in memory once per node) or streamed
    from the Parquet shards. `auto` streams when the image columns a sweep needs exceed `budget_mb` (default: half
    of the cluster's object store)."""

    stream: str = "auto"
    budget_mb: float | None = None

    def __post_init__(self) -> None:
        require(self.stream in STREAM_MODES, f"data.stream must be one of {', '.join(STREAM_MODES)}, "
                                             f"got {self.stream!r}")
        require(self.budget_mb is None or (isinstance(self.budget_mb, int | float)
                                           and not isinstance(self.budget_mb, bool) and self.budget_mb > 0),
                f"data.budget_mb must be a number of MiB > 0, got {self.budget_mb!r}")

    @classmethod
    def from_yaml(cls, data: object) -> DataConfig:
        data = _section("data", data, ("stream", "budget_mb"))
        return cls(stream=data.get("stream", "auto"), budget_mb=data.get("budget_mb"))

    def budget_bytes(self, object_store_bytes: float) -> float:
        """The budget in bytes; without `budget_mb`, half the object store (unknown, 0: no limit)."""
        if self.budget_mb is not None:
            return float(self.budget_mb) * 2**20
        return object_store_bytes / 2 if object_store_bytes > 0 else math.inf


@dataclass(frozen=True)
class SweepConfig:
    """Run settings of a sweep: per-trial resources, retries, checkpointing, and whether it is a smoke test."""

    resources: Resources = field(default_factory=Resources)
    max_failures: int = 1  # retries of a trial whose process or node died (-1: forever)
    checkpoint_every: int = 1  # epochs between a trial's resume checkpoints (the final one is always saved)
    smoke_test: bool = False  # set by --smoke-test; resources then shrink to what the cluster has
    data: DataConfig = field(default_factory=DataConfig)
    # Warm workers: a finished trial's worker takes the next trial with the same resources (Tune's reuse_actors).
    # None: on for CPU-only trials, off when trials use GPUs (not yet measured on a GPU; see docs).
    warm_workers: bool | None = None
    max_trials_per_worker: int = MAX_TRIALS_PER_WORKER  # then the worker retires and Tune starts a fresh one
    worker_growth_mb: float = WORKER_GROWTH_MB  # or once its private memory grew this much over its first trial's

    def __post_init__(self) -> None:
        require(self.max_failures >= -1, f"max_failures must be an integer >= -1, got {self.max_failures!r}")
        require(self.checkpoint_every >= 1, f"checkpoint_every must be an integer >= 1, got {self.checkpoint_every!r}")
        require(self.warm_workers is None or isinstance(self.warm_workers, bool),
                f"warm_workers must be true or false, got {self.warm_workers!r}")
        if self.warm_workers is None:  # resolved once, so sweep.yaml stores what ran
            object.__setattr__(self, "warm_workers", self.resources.gpus == 0)
        require(isinstance(self.max_trials_per_worker, int) and not isinstance(self.max_trials_per_worker, bool)
                and self.max_trials_per_worker >= 1,
                f"max_trials_per_worker must be an integer >= 1, got {self.max_trials_per_worker!r}")
        require(isinstance(self.worker_growth_mb, int | float) and not isinstance(self.worker_growth_mb, bool)
                and self.worker_growth_mb > 0, f"worker_growth_mb must be a number of MiB > 0, "
                                               f"got {self.worker_growth_mb!r}")

    @property
    def reuse_workers(self) -> bool:
        """Whether trial workers are reused (`warm_workers`, or its default for these resources)."""
        return bool(self.warm_workers)

    def to_yaml(self) -> dict[str, object]:
        return {"resources": vars(self.resources).copy(), "max_failures": self.max_failures,
                "checkpoint_every": self.checkpoint_every, "data": vars(self.data).copy(),
                "warm_workers": self.reuse_workers, "max_trials_per_worker": self.max_trials_per_worker,
                "worker_growth_mb": self.worker_growth_mb}

    def fit(self, cluster: Mapping[str, float], can_grow: bool) -> SweepConfig:
        """Check per-trial resources against the Ray cluster's; a smoke test shrinks them to one CPU and, when
        the cluster has GPUs, at most one GPU (so `--smoke-test` of a GPU file also runs on a laptop)."""
        cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
        wanted = self.resources
        if self.smoke_test:
            fitted = Resources(cpus=min(wanted.cpus, 1.0), gpus=min(wanted.gpus, 1.0) if gpus >= 1 else 0.0)
            return dataclasses.replace(self, resources=fitted)
        if not can_grow and (wanted.cpus > cpus or wanted.gpus > gpus):
            raise ConfigError(f"resources: each trial asks for {wanted.cpus:g} CPUs and {wanted.gpus:g} GPUs, but "
                              f"this Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs; lower `resources` in the file "
                              f"or run it on a cluster (--address)")
        return self
