"""`exifray predict BUNDLE INPUT... --out FILE`: tag people's own photos with an exported model, on Ray Data.

    exifray predict models/best photos/ more/IMG_0001.HEIC s3://bucket/inbox/ --out tags.jsonl
    exifray predict models/best photos/ --out tags.csv --format csv --threshold calibrated --concurrency 2
    ray job submit --working-dir . -- python jobs/predict.py models/best photos/ --out tags.jsonl

Inputs are folders (searched recursively for the formats ingest reads), single files or `s3://` prefixes. The
pipeline: the list of photos → `map_batches` tasks that read each photo's bytes, hash them and decode them with
the dataset's own decoder (`exifray.data.photo.read_photo`, the parameters the bundle recorded) → a pool of
model actors (`--concurrency`, one GPU each when the cluster has GPUs, else one CPU each so the rest decode)
that predict and choose tags with the policy (`exifray.tagging`). One row per photo: path, sha256, bundle id,
tags, a probability per class, whether EXIF was found, and `error` (a photo that cannot be read is a row with
its reason, never a crash). A re-run skips photos whose (sha256, bundle id) already have a row in FILE
(`--force` redoes them all); FILE is replaced whole (local) or written in one PUT (object storage).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from exifray.data.photo import DecodeParams, Rejected, read_photo
from exifray.data.sources import IMAGE_SUFFIXES
from exifray.errors import ConfigError, InputNotFoundError
from exifray.fsutil import atomic_write_bytes, filesystem_and_path, is_uri
from exifray.tagging import PolicyFlags, TagPolicy

if TYPE_CHECKING:
    import pandas as pd

    from exifray.bundle import LoadedModel

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv")
PROBABILITY_PREFIX = "p_"
DECODE_CPUS = 0.5  # the wide CSV's probability columns: p_<class>


# --- inputs ----------------------------------------------------------------------------------------------------

def list_photos(inputs: Sequence[str]) -> list[str]:
    """Every photo named: files as given, folders and URI prefixes searched recursively for image suffixes.
    Sorted and without repeats; a missing input is an error (nothing is predicted)."""
    found: list[str] = []
    for item in inputs:
        if is_uri(item):
            found += _list_uri(item)
            continue
        path = Path(item)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(str(path))
        else:
            raise InputNotFoundError(f"input does not exist: {item}")
    return sorted(dict.fromkeys(found))


def _list_uri(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, root = filesystem_and_path(uri)
    scheme = uri.split("://", 1)[0]
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [uri]
    if info.type == pafs.FileType.NotFound:
        raise InputNotFoundError(f"input does not exist: {uri}")
    entries = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return sorted(f"{scheme}://{entry.path}" for entry in entries
                  if entry.type == pafs.FileType.File and Path(entry.path).suffix.lower() in IMAGE_SUFFIXES)


def read_location(location: str) -> bytes:
    if is_uri(location):
        fs, path = filesystem_and_path(location)
        with fs.open_input_stream(path) as stream:
            data: bytes = stream.readall()
            return data
    return Path(location).read_bytes()


# --- the pipeline's two stages ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodeStage:
    """Ray Data task: read, hash and decode a batch of photo locations. Photos whose sha256 is in `skip` are
    marked and not decoded; a photo that cannot be read gets its reason in `error`."""

    params: DecodeParams
    skip: frozenset[str] = frozenset()
    thumbnail: int = 0  # > 0: also a JPEG thumbnail of this many px (organize's album page)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = self.params.sizes[0]
        paths = [str(p) for p in batch["path"]]
        sources = [str(p) for p in batch["source"]] if "source" in batch else paths
        images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
        out: dict[str, list[object]] = {"sha256": [], "exif": [], "exif_found": [], "error": [], "skipped": [],
                                     "thumbnail": []}
        for index, source in enumerate(sources):
            sha, exif, found, error, skipped, thumb = "", "{}", False, "", False, b""
            try:
                data = read_location(source)
                sha = hashlib.sha256(data).hexdigest()
                if sha in self.skip:
                    skipped = True
                else:
                    photo = read_photo(data, self.params)
                    images[index] = photo.images[size]
                    exif, found = json.dumps(photo.exif.as_floats()), photo.exif_found
                    thumb = _thumbnail(data, self.thumbnail) if self.thumbnail else b""
            except Rejected as exc:
                error = f"{exc.reason}: {exc.detail}"
            except OSError as exc:
                error = f"unreadable: {type(exc).__name__}: {exc}"
            for key, value in (("sha256", sha), ("exif", exif), ("exif_found", found), ("error", error),
                               ("skipped", skipped), ("thumbnail", thumb)):
                out[key].append(value)
        columns = {key: np.array(values, dtype=object) for key, values in out.items()}
        return {"path": np.array(paths, dtype=object), "image": images, **columns}


def _thumbnail(data: bytes, size: int) -> bytes:
    """A small JPEG of the photo, upright (the album page's grid)."""
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (size, size))
    image = ImageOps.exif_transpose(image)
    image = image.convert("RGBA").convert("RGB") if image.mode not in ("RGB", "L") else image.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


class PredictStage:
    """Ray Data actor: loads the bundle once, then predicts each batch and chooses its tags."""

    def __init__(self, bundle: str, policy: TagPolicy):
        from exifray.bundle import load_model
        from exifray.models.runtime import configure_tensorflow

        configure_tensorflow(None)
        self.loaded = load_model(bundle)
        self.policy = policy

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        usable = np.array([not error and not skipped for error, skipped in zip(batch["error"], batch["skipped"],
                                                                              strict=True)], dtype=bool)
        classes = self.loaded.classes
        probabilities = np.full((len(usable), len(classes)), np.nan, dtype=np.float64)
        tags: list[list[str]] = [[] for _ in usable]
        if usable.any():
            exif = [json.loads(text) for text, ok in zip(batch["exif"], usable, strict=True) if ok]
            inputs = self.loaded.photo_inputs(batch["image"][usable].astype(np.float32), exif)
            predicted = np.asarray(self.loaded.model(inputs, training=False), dtype=np.float64)
            probabilities[usable] = predicted
            for index, chosen in zip(np.flatnonzero(usable), self.policy.tags(predicted, classes), strict=True):
                tags[int(index)] = chosen
        result = {key: value for key, value in batch.items() if key != "image"}
        result["probabilities"] = probabilities
        result["tags"] = np.array([json.dumps(t) for t in tags], dtype=object)
        result["bundle_id"] = np.array([self.loaded.bundle_id] * len(usable), dtype=object)
        return result


# --- running it ------------------------------------------------------------------------------------------------

class PredictionRow(TypedDict):
    """One photo's line in the JSONL file (the CSV spreads `probabilities` into p_<class> columns)."""

    path: str
    sha256: str | None
    bundle_id: str
    tags: list[str]
    probabilities: dict[str, float] | None  # None when the photo could not be read
    exif_found: bool
    error: str | None


@dataclass
class Predicted:
    rows: list[PredictionRow]  # one per input photo, in input order
    predicted: int  # photos run through the model this time
    skipped: int  # photos whose (sha256, bundle id) already had a row
    errors: int
    seconds: float

    @property
    def photos_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else float("nan")


def prediction_row(record: Mapping[str, object], classes: Sequence[str]) -> PredictionRow:
    """The row of one photo from the pipeline's record."""
    probabilities = np.asarray(record["probabilities"], dtype=np.float64)
    error = str(record["error"]) or None
    return {"path": str(record["path"]), "sha256": str(record["sha256"]) or None,
            "bundle_id": str(record["bundle_id"]), "tags": json.loads(str(record["tags"])) if not error else [],
            "probabilities": None if error else {c: float(p) for c, p in zip(classes, probabilities, strict=True)},
            "exif_found": bool(record["exif_found"]), "error": error}


def _absolute(location: str) -> str:
    return location if is_uri(location) else str(Path(location).resolve())


def run_pipeline(loaded: LoadedModel, bundle: str, photos: Sequence[str], policy: TagPolicy, *,
                 skip: frozenset[str] = frozenset(), concurrency: int = 1, batch_size: int = 32,
                 thumbnail: int = 0) -> Iterator[dict[str, object]]:
    """The Ray Data pipeline over `photos` (Ray must be running): rows as the actors finish them, each with its
    decode and prediction columns (`skipped` rows carry only their sha256)."""
    import ray

    if not photos:
        return
    gpus = ray.cluster_resources().get("GPU", 0)
    resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}
    if gpus < 1 and ray.cluster_resources().get("CPU", 1) < concurrency + 1:
        logger.warning("--concurrency %d leaves no CPU for decoding on this cluster (%s CPUs); decoding will wait",
                       concurrency, ray.cluster_resources().get("CPU"))
    blocks = max(1, min(len(photos) // batch_size, 64))
    # The tasks and actors resolve a relative path in their own working directory, the driver's when Ray started,
    # not after a later chdir (a notebook): they get absolute ones, and the rows keep each path as given.
    dataset = ray.data.from_items([{"path": path, "source": _absolute(path)} for path in photos],
                                  override_num_blocks=blocks)
    bundle = _absolute(bundle)
    decode = DecodeStage(loaded.decode_params(), skip, thumbnail)
    # Half a CPU per decode task: two interleave reading and decoding per core, and the resources differ from the
    # model actors', so Ray Data keeps decoding in tasks of its own instead of fusing it into the actors.
    dataset = dataset.map_batches(decode, batch_size=batch_size, batch_format="numpy", num_cpus=DECODE_CPUS)
    dataset = dataset.map_batches(PredictStage, fn_constructor_kwargs={"bundle": bundle, "policy": policy},
                                  batch_size=batch_size, batch_format="numpy",
                                  compute=ray.data.ActorPoolStrategy(size=concurrency), **resources)
    yield from dataset.iter_rows()


def predict(bundle: str, inputs: Sequence[str], out: str, *, policy: TagPolicy | None = None,
            force: bool = False, concurrency: int = 1, batch_size: int = 32, output_format: str | None = None,
            policy_flags: PolicyFlags | None = None) -> Predicted:
    """Predict every photo in `inputs` and write FILE; `policy` None: built from `policy_flags` for the bundle."""
    from exifray.bundle import load_model
    from exifray.tagging import make_policy

    output_format = output_format or ("csv" if out.lower().endswith(".csv") else "jsonl")
    if output_format not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}, got {output_format!r}")
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be >= 1, got {concurrency}")
    photos = list_photos(inputs)
    loaded = load_model(bundle)
    if policy is None:
        policy = make_policy(loaded.multi_label, calibrated=loaded.thresholds, **(policy_flags or {}))
    existing = read_predictions(out, output_format, loaded.classes)  # read once: skipping and keeping both use it
    previous = [] if force else [row for row in existing
                                 if row.get("bundle_id") == loaded.bundle_id and not row.get("error")]
    known = {str(row["sha256"]): row for row in previous}  # rows without an error have their sha256
    started = time.perf_counter()
    fresh: dict[str, PredictionRow] = {}
    reused: dict[str, PredictionRow] = {}
    for record in run_pipeline(loaded, bundle, photos, policy, skip=frozenset(known), concurrency=concurrency,
                               batch_size=batch_size):
        path = str(record["path"])
        if bool(record["skipped"]):
            reused[path] = {**known[str(record["sha256"])], "path": path}
        else:
            fresh[path] = prediction_row(record, loaded.classes)
    seconds = time.perf_counter() - started
    rows = [fresh.get(path) or reused[path] for path in photos]
    listed = set(photos)
    kept = [row for row in existing if row["path"] not in listed]
    write_predictions(out, [*kept, *rows], output_format, loaded.classes)
    errors = sum(1 for row in rows if row["error"])
    summary = Predicted(rows, len(fresh), len(reused), errors, seconds)
    logger.info("predicted %d photos (%d skipped as already in %s, %d errors) in %.1f s, %.1f photos/s",
                summary.predicted, summary.skipped, out, errors, seconds, summary.photos_per_second)
    return summary


# --- the output file -------------------------------------------------------------------------------------------

def read_predictions(out: str, output_format: str, classes: Sequence[str]) -> list[PredictionRow]:
    """The rows an earlier run wrote to FILE (none when it does not exist)."""
    try:
        data = read_location(out)
    except FileNotFoundError:
        return []
    if output_format == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(data), dtype={"sha256": str, "bundle_id": str, "error": str}, keep_default_na=False)
    return [_row_from_csv({str(k): v for k, v in row.items()}, classes) for row in frame.to_dict("records")]


def _row_from_csv(row: Mapping[str, object], classes: Sequence[str]) -> PredictionRow:
    error = str(row.get("error") or "") or None
    probabilities = None if error else {c: float(str(row[f"{PROBABILITY_PREFIX}{c}"])) for c in classes}
    return {"path": str(row["path"]), "sha256": str(row["sha256"]) or None, "bundle_id": str(row["bundle_id"]),
            "tags": [t for t in str(row.get("tags") or "").split(";") if t], "probabilities": probabilities,
            "exif_found": str(row.get("exif_found")).lower() == "true", "error": error}


def predictions_frame(rows: Sequence[PredictionRow], classes: Sequence[str]) -> pd.DataFrame:
    """The wide CSV form: tags joined with `;`, a p_<class> column per class."""
    import pandas as pd

    wide = []
    for row in rows:
        probabilities = row.get("probabilities") or {}
        wide.append({"path": row["path"], "sha256": row["sha256"] or "", "bundle_id": row["bundle_id"],
                     "tags": ";".join(row["tags"]), "exif_found": row["exif_found"], "error": row["error"] or "",
                     **{f"{PROBABILITY_PREFIX}{c}": probabilities.get(c, float("nan")) for c in classes}})
    return pd.DataFrame(wide, columns=["path", "sha256", "bundle_id", "tags", "exif_found", "error",
                                       *(f"{PROBABILITY_PREFIX}{c}" for c in classes)])


def write_predictions(out: str, rows: Sequence[PredictionRow], output_format: str, classes: Sequence[str]) -> None:
    if output_format == "jsonl":
        data = "".join(json.dumps(row, allow_nan=False, default=_json_default) + "\n" for row in rows).encode()
    else:
        data = predictions_frame(rows, classes).to_csv(index=False).encode("utf-8")
    if is_uri(out):
        fs, path = filesystem_and_path(out)
        with fs.open_output_stream(path) as stream:  # one PUT: the object appears whole or not at all
            stream.write(data)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, data)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[None]:
    """Join the cluster in `address` (or RAY_ADDRESS), else start Ray in-process and shut it down at the end."""
    import os

    import ray

    if ray.is_initialized():
        yield
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], logging_level=logging.WARNING)
    else:
        from exifray.ray_start import start_ray

        start_ray(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()
