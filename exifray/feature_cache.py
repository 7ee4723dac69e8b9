"""The FEATURE CACHE: pooled features of a frozen backbone, computed once per (backbone, weights, size, ...,
dataset) and read by every head-phase trial that would otherwise push the same photos through the same
frozen network every epoch.

    cache = FeatureCache("experiments/feature_cache")           # or s3://bucket/experiments/feature_cache
    features, outcome = obtain(cache, key, compute)              # a hit, or built (once, even when concurrent)

Layout, beside the experiments under the storage path: `feature_cache/<digest>/features.npz` (float32
`train`, `val`, `test` arrays, one row per photo in the dataset's split order) and `entry.json`, written last,
with the key's fields, the arrays' shapes, the sha256 of `features.npz`, and what the build cost. An entry
without `entry.json`, or whose `features.npz` does not match its sha256 or shapes, does not exist: it is
rebuilt, never read.

In a sweep, a zero-CPU coordinator actor (`Coordinator`, owned by the driver) sees that the first trial
asking for a key builds it with its own resources while the others wait, and keeps the built arrays in the
object store (owned by the coordinator) so that waiting and later trials on the node read them from shared
memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from exifray import schema
from exifray.errors import DataError
from exifray.fsutil import atomic_write_bytes, filesystem_and_path, is_uri

if TYPE_CHECKING:
    import keras
    import pyarrow.fs as pafs
    import ray
    from ray.actor import ActorHandle

    from exifray.config import TrialConfig
    from exifray.models.fusion import BuiltModel

logger = logging.getLogger(__name__)

CACHE_DIR: Final = "feature_cache"
FEATURES_FILE: Final = "features.npz"
ENTRY_FILE: Final = "entry.json"
# The batch size the frozen backbone's latency is measured at when an entry of pooled features is built.
LATENCY_BATCH: Final = 32

# A trial's `feature_cache` outcome (its result says which and why).
HIT: Final = "hit"
BUILT: Final = "built"
OFF: Final = "off"
NOT_APPLICABLE: Final = "not applicable"


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes the features: two trials with equal keys read the same entry."""

    backbone: str
    weights: str  # "imagenet" or "sha256:<digest of the weights file>"
    image_size: int
    preprocessing: str
    pooling: str
    precision: str
    keras_version: str
    tensorflow_version: str
    dataset_id: str
    cut: str = ""  # "": the pooled features; else the backbone's activations at this tensor (fine-tuning)

    @property
    def digest(self) -> str:
        fields = {name: value for name, value in asdict(self).items() if name != "cut" or value}
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class Features:
    """Pooled backbone features (or a cut's activations) per split, rows in the dataset's order, and what the frozen
    layers that computed them cost a photo (milliseconds at `LATENCY_BATCH`, NaN when not measured) and their
    parameters: the backbone's, or its layers' below the cut."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    backbone_ms: float = math.nan
    backbone_params: int = 0

    def split(self, name: str) -> np.ndarray:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, train=self.train, val=self.val, test=self.test)
        return buffer.getvalue()


@dataclass(frozen=True)
class BuildCost:
    seconds: float
    emissions_kg: float
    energy_kwh: float


class FeatureCache:
    """The entries under one folder (local path or any pyarrow URI such as `s3://bucket/experiments/...`)."""

    def __init__(self, root: str):
        self.root_uri = root
        self.fs: pafs.FileSystem
        self.fs, self.root = filesystem_and_path(root)
        self.local = not is_uri(root)

    @classmethod
    def under(cls, storage_path: str) -> FeatureCache:
        """The cache beside the experiments of a storage path."""
        return cls(storage_path.rstrip("/") + "/" + CACHE_DIR)

    def _path(self, digest: str, filename: str = "") -> str:
        return f"{self.root}/{digest}" + (f"/{filename}" if filename else "")

    def _write(self, path: str, data: bytes) -> None:
        if self.local:
            atomic_write_bytes(path, data)
            return
        with self.fs.open_output_stream(path) as stream:  # object stores publish a file whole
            stream.write(data)

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return bytes(stream.readall())

    def entry(self, digest: str) -> dict[str, Any] | None:
        """An entry's `entry.json`, or None when there is no complete entry."""
        try:
            return dict(json.loads(self._read(self._path(digest, ENTRY_FILE))))
        except (FileNotFoundError, OSError, ValueError):
            return None

    def load(self, key: CacheKey) -> Features | None:
        """The cached features of `key`; None when absent, partial or damaged (a damaged entry is removed)."""
        entry = self.entry(key.digest)
        if entry is None:
            return None
        try:
            data = self._read(self._path(key.digest, FEATURES_FILE))
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise DataError("features.npz does not match the sha256 in entry.json")
            with np.load(io.BytesIO(data)) as arrays:
                train, val, test = (np.asarray(arrays[name], dtype=np.float32) for name in schema.SPLITS)
            features = Features(train, val, test, backbone_ms=float(entry.get("backbone_ms") or math.nan),
                                backbone_params=int(entry.get("backbone_params") or 0))
            shapes = {name: list(features.split(name).shape) for name in schema.SPLITS}
            if shapes != entry["shapes"]:
                raise DataError(f"array shapes {shapes} differ from entry.json's {entry['shapes']}")
        except (OSError, ValueError, KeyError, DataError) as exc:
            logger.warning("feature cache entry %s is damaged (%s): rebuilding it", key.digest, exc)
            self.remove(key.digest)
            return None
        return features

    def store(self, key: CacheKey, features: Features, cost: BuildCost) -> None:
        """Write `features.npz`, then `entry.json` (the entry exists only once the latter is complete)."""
        data = features.to_bytes()
        if self.local:
            self.fs.create_dir(self._path(key.digest), recursive=True)
        self._write(self._path(key.digest, FEATURES_FILE), data)
        entry = {"key": asdict(key), "digest": key.digest, "sha256": hashlib.sha256(data).hexdigest(),
                 "bytes": len(data), "shapes": {name: list(features.split(name).shape) for name in schema.SPLITS},
                 "backbone_ms": None if math.isnan(features.backbone_ms) else features.backbone_ms,
                 "backbone_params": features.backbone_params,
                 "latency_batch": LATENCY_BATCH,
                 "build_s": cost.seconds, "build_emissions_kg": cost.emissions_kg,
                 "build_energy_kwh": cost.energy_kwh, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write(self._path(key.digest, ENTRY_FILE), (json.dumps(entry, indent=2) + "\n").encode("utf-8"))

    def remove(self, digest: str) -> None:
        try:
            self.fs.delete_dir(self._path(digest))
        except (FileNotFoundError, OSError):
            logger.debug("nothing to remove at %s", self._path(digest))

    def entries(self) -> list[dict[str, Any]]:
        """Every complete entry's `entry.json`, oldest first."""
        import pyarrow.fs as pafs

        if self.fs.get_file_info(self.root).type != pafs.FileType.Directory:
            return []
        folders = self.fs.get_file_info(pafs.FileSelector(self.root))
        found = [self.entry(info.base_name) for info in folders if info.type == pafs.FileType.Directory]
        return sorted((e for e in found if e is not None), key=lambda e: str(e.get("created", "")))

    def clear(self, digests: list[str] | None = None) -> list[str]:
        """Remove the given entries (all, also partial ones, when None); returns what was removed."""
        import pyarrow.fs as pafs

        if digests is None:
            if self.fs.get_file_info(self.root).type != pafs.FileType.Directory:
                return []
            digests = [info.base_name for info in self.fs.get_file_info(pafs.FileSelector(self.root))
                       if info.type == pafs.FileType.Directory]
        for digest in digests:
            self.remove(digest)
        return list(digests)


# --- coordination between concurrent trials -----------------------------------------------------------------

class Coordinator:
    """A zero-CPU actor: one builder per key, the others wait; built arrays stay in the object store.

    Methods answer ("build",), ("wait",) or ("ready", [ref]) — the ObjectRef in a list so that Ray hands the
    reference itself back, not its value."""

    def __init__(self) -> None:
        import asyncio

        self._building: dict[str, asyncio.Event] = {}
        self._ready: dict[str, list[ray.ObjectRef]] = {}

    def claim(self, digest: str) -> tuple[str, list[ray.ObjectRef]]:
        if digest in self._ready:
            return "ready", self._ready[digest]
        if digest in self._building:
            return "wait", []
        import asyncio

        self._building[digest] = asyncio.Event()
        return "build", []

    async def wait(self, digest: str) -> tuple[str, list[ray.ObjectRef]]:
        event = self._building.get(digest)
        if event is not None:
            await event.wait()
        if digest in self._ready:
            return "ready", self._ready[digest]
        return "retry", []  # the builder failed: claim again

    def publish(self, digest: str, features: Features | None) -> None:
        """The builder is done (features None: it failed, the next claimant builds)."""
        import ray

        if features is not None:
            self._ready[digest] = [ray.put(features)]  # owned by this actor: outlives the building trial
        event = self._building.pop(digest, None)
        if event is not None:
            event.set()


def coordinator() -> ActorHandle:
    """A new coordinator actor for one sweep (0 CPUs, so a full cluster cannot deadlock on it), created and owned by
    the driver: anonymous, so a second sweep in the same Ray session (another storage path, a notebook's next
    run) starts with nothing ready, and it ends with the sweep (`run_sweep` kills it)."""
    import ray

    return ray.remote(num_cpus=0, max_concurrency=1000)(Coordinator).remote()


def obtain(cache: FeatureCache | None, key: CacheKey, compute: Callable[[], tuple[Features, BuildCost]],
           coordination: ActorHandle | None = None) -> tuple[Features, str, BuildCost | None]:
    """The features of `key`: from the object store or the cache (a hit), or computed and stored (built).
    Returns (features, HIT or BUILT, the build's cost when this call built them)."""
    import ray

    while True:
        if coordination is not None:
            answer, refs = ray.get(coordination.claim.remote(key.digest))
            if answer == "wait":
                answer, refs = ray.get(coordination.wait.remote(key.digest))
                if answer == "retry":
                    continue
            if answer == "ready":
                return ray.get(refs[0]), HIT, None
        stored = cache.load(key) if cache is not None else None
        if stored is not None:
            if coordination is not None:
                ray.get(coordination.publish.remote(key.digest, stored))
            return stored, HIT, None
        return _build(cache, key, compute, coordination)


def _build(cache: FeatureCache | None, key: CacheKey, compute: Callable[[], tuple[Features, BuildCost]],
           coordination: ActorHandle | None) -> tuple[Features, str, BuildCost]:
    import ray

    features: Features | None = None
    try:
        features, cost = compute()
        if cache is not None:
            cache.store(key, features, cost)
        logger.info("feature cache %s built in %.1f s (%s %d px)", key.digest, cost.seconds, key.backbone,
                    key.image_size)
        return features, BUILT, cost
    finally:
        if coordination is not None:
            ray.get(coordination.publish.remote(key.digest, features))


# --- what a trial needs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheAccess:
    """Where a trial finds cached features: the cache folder (None: compute in memory, keep nothing) and the
    sweep's coordinator actor (None outside a sweep)."""

    cache: FeatureCache | None = None
    coordination: ActorHandle | None = None


@dataclass(frozen=True)
class Route:
    """Whether a trial's head phase trains on cached features, and why (what its result reports)."""

    use: bool
    outcome: str  # HIT / BUILT once obtained; OFF or NOT_APPLICABLE when not used
    reason: str


def route(config: TrialConfig, built: BuiltModel) -> Route:
    """The head phase can read cached features when the backbone is frozen over fixed weights and the inputs are
    deterministic."""
    if not config.uses_image:
        return Route(False, NOT_APPLICABLE, "an EXIF-only model has no backbone")
    if config.feature_cache == "off":
        return Route(False, OFF, "feature_cache: off")
    if not built.pretrained:
        return Route(False, NOT_APPLICABLE, "weights 'none': the backbone trains from the first epoch")
    if config.augment:
        return Route(False, NOT_APPLICABLE, "augment: the images change every epoch, so do their features")
    return Route(True, "", "the head phase trains on pooled features of the frozen backbone")


def cache_key(config: TrialConfig, built: BuiltModel, image_size: int, dataset: str) -> CacheKey:
    import keras
    import tensorflow as tf

    from exifray.models.fusion import weights_identity

    assert built.spec is not None and built.weights is not None
    return CacheKey(backbone=built.spec.name, weights=weights_identity(built.weights), image_size=image_size,
                    preprocessing=built.spec.preprocessing, pooling="global_average", precision=config.precision,
                    keras_version=keras.__version__, tensorflow_version=tf.__version__, dataset_id=dataset)


def compute_features(extractor: keras.Model, images: dict[str, np.ndarray], country: str
                     ) -> tuple[Features, BuildCost]:
    """Every split's images through the frozen `extractor` (to the pooled features, or to a fine-tuning cut),
    measured by CodeCarbon; then its latency per photo (what a trial that trains on the entry adds to its
    own model's: the head's, or the layers' above the cut)."""
    from exifray.models.runtime import inference_ms

    features, cost = compute_arrays(extractor, images, country)
    timed = images["test"] if len(images["test"]) else images["val"]
    ms = inference_ms(extractor, {"image": timed}, LATENCY_BATCH)
    return replace(features, backbone_ms=ms, backbone_params=int(extractor.count_params())), cost


def compute_arrays(extractor: keras.Model, images: dict[str, np.ndarray], country: str
                   ) -> tuple[Features, BuildCost]:
    """Every split's images through `extractor` (input `image`, one output), measured by CodeCarbon. In batches of
    LATENCY_BATCH, the last one padded: the extractor's predict function is traced once, for every split and for the
    latency measured after it (`predict()` traced it twice, for the full batches and the last: 0.5-0.8 s each for
    MobileNetV2 at 64-96 px)."""
    from exifray.batches import predict_arrays
    from exifray.emissions import TrialEmissions

    started = time.perf_counter()
    with TrialEmissions(country) as emissions:
        emissions.start_segment("feature-cache-build")
        arrays = {}
        for name in schema.SPLITS:
            pixels = images[name]
            shape = (0, *(int(size) for size in extractor.outputs[0].shape[1:]))
            arrays[name] = (np.asarray(predict_arrays(extractor, {"image": pixels}, LATENCY_BATCH), dtype=np.float32)
                            if len(pixels) else np.zeros(shape, dtype=np.float32))
        totals = emissions.close()
    cost = BuildCost(time.perf_counter() - started, totals.emissions_kg, totals.energy_kwh)
    return Features(arrays["train"], arrays["val"], arrays["test"]), cost


def with_exif(cached: dict[str, np.ndarray], photos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A model's inputs on cached arrays: those, and the split's EXIF vector when the model has one (fusion)."""
    return {**cached, "exif": photos["exif"]} if "exif" in photos else cached


class HeadFeatures:
    """One trial's use of the cache: decides the route, obtains the features the first time the head phase
    needs them, and reports the outcome (`feature_cache`, its reason, the key, and the build's cost)."""

    def __init__(self, access: CacheAccess | None, config: TrialConfig, built: BuiltModel,
                 inputs: dict[str, dict[str, np.ndarray]], image_size: int | None, dataset: str | None):
        self.access = access or CacheAccess()
        self.config, self.built, self.inputs_by_split = config, built, inputs
        self.route = route(config, built)
        self.outcome, self.reason = self.route.outcome, self.route.reason
        self.key = (cache_key(config, built, image_size, dataset or "unidentified")
                    if self.route.use and image_size is not None else None)
        self.cost: BuildCost | None = None
        self._features: Features | None = None

    @property
    def use(self) -> bool:
        return self.route.use

    def _obtained(self) -> Features:
        if self._features is None:
            assert self.key is not None
            pixels = {name: self.inputs_by_split[name]["image"] for name in schema.SPLITS}
            built, country = self.built, self.config.country  # the backbone is built only if the entry is
            self._features, self.outcome, self.cost = obtain(
                self.access.cache, self.key, lambda: compute_features(built.feature_extractor(), pixels, country),
                self.access.coordination)
        return self._features

    @property
    def backbone_cost(self) -> tuple[float, int] | None:
        """(ms per photo, parameters) of the frozen backbone, measured when the entry was built; None if not."""
        features = self._features
        if features is None or math.isnan(features.backbone_ms):
            return None
        return features.backbone_ms, features.backbone_params

    @property
    def width(self) -> int:
        """How many pooled features each photo has (the head model's `features` input)."""
        return int(self._obtained().train.shape[1])

    def inputs(self, split: str) -> dict[str, np.ndarray]:
        """The head model's inputs for a split: `features` (and `exif` for fusion)."""
        return with_exif({"features": self._obtained().split(split)}, self.inputs_by_split[split])

    def progress(self) -> dict[str, object]:
        """What every epoch's report carries: the outcome so far and, once built here, the build's cost."""
        metrics = self.metrics()
        return {key: metrics[key] for key in (schema.FEATURE_CACHE, schema.FEATURE_BUILD_S, schema.FEATURE_BUILD_KG)}

    def metrics(self) -> dict[str, object]:
        outcome = self.outcome or "not used (the head phase had finished before a resume)"
        return {schema.FEATURE_CACHE: outcome, "feature_cache_reason": self.reason,
                "feature_cache_key": self.key.digest if self.key is not None else "",
                schema.FEATURE_BUILD_S: self.cost.seconds if self.cost else math.nan,
                schema.FEATURE_BUILD_KG: self.cost.emissions_kg if self.cost else math.nan}
