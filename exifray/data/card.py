"""The dataset card (`dataset.json`): a frozen, typed record that ingest writes and every reader uses.

    card = read_card("data/dataset")             # or s3://bucket/dataset
    card.dataset_id                              # sha256 over the shards' contents: the dataset's identity
    card.shards                                  # the manifest: every shard file with rows, bytes, sha256
    card.resolve_image_size(None)                # the size a trial trains at (None: the first size)

The card is written last, after every shard: a folder without one is not a dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from exifray import schema
from exifray.data.photo import DecodeParams
from exifray.errors import ConfigError, DataError, ExifrayError, InputNotFoundError
from exifray.exif.encode import ExifEncoder
from exifray.fsutil import filesystem_and_path

if TYPE_CHECKING:
    import pyarrow.fs as pafs

CARD_VERSION: Final = 2  # 2: dataset_id and the shard manifest


@dataclass(frozen=True)
class ShardFile:
    """One entry of the manifest: a Parquet file relative to the dataset dir (`versions/<v>/shards/part-NNNNN.parquet`;
    `shards/part-NNNNN.parquet` in datasets from before versions)."""

    path: str
    rows: int
    bytes: int
    sha256: str


def dataset_id(shards: Iterable[ShardFile]) -> str:
    """The content identity of a dataset: a sha256 over its shard files' names (`part-NNNNN.parquet`, not the
    version folder they sit in, so re-ingesting the same data keeps the identity) and contents (their sha256)."""
    digest = hashlib.sha256()
    for shard in sorted(shards, key=lambda s: PurePosixPath(s.path).name):
        digest.update(f"{PurePosixPath(shard.path).name}\0{shard.sha256}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class DatasetCard:
    version: int
    created_by: str
    inputs: tuple[Mapping[str, str], ...]
    label_level: str
    label_mode: str
    classes: tuple[str, ...]
    hierarchy: Mapping[str, Any]
    concept_filter: tuple[str, ...]
    splits: Mapping[str, Any]
    counts: Mapping[str, Mapping[str, int]]
    photos: int
    image_sizes: tuple[int, ...]
    image_columns: Mapping[str, Any]
    exif: Mapping[str, Any]
    quarantine: Mapping[str, Any]
    filtered: Mapping[str, int]
    merged_duplicate_ids: int
    listed: int
    source: Mapping[str, Any]
    dataset_id: str | None = None  # None: a card written before version 2
    decode: Mapping[str, Any] = field(default_factory=dict)  # DecodeParams.to_dict(); {}: an older card
    shards: tuple[ShardFile, ...] = ()

    @property
    def multi_label(self) -> bool:
        return self.label_mode == "multi"

    @property
    def encoder(self) -> ExifEncoder:
        """The EXIF encoder fitted on the train split."""
        return ExifEncoder.from_dict(self.exif["encoder"])

    def resolve_image_size(self, size: int | None) -> int:
        """The size a trial trains at: `size`, or the dataset's first size; a size it lacks is a ConfigError."""
        chosen = self.image_sizes[0] if size is None else size
        if chosen not in self.image_sizes:
            raise ConfigError(f"image_size {chosen} is not in the dataset; it has sizes {list(self.image_sizes)} "
                              f"(re-run `exifray ingest --sizes`)")
        return int(chosen)

    def decode_params(self) -> DecodeParams:
        """How the dataset's photos were decoded (what predict and serve must repeat)."""
        return DecodeParams.recorded(self.image_sizes, self.decode)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        for key in ("inputs", "classes", "concept_filter", "image_sizes"):
            data[key] = list(data[key])
        data["shards"] = [asdict(shard) for shard in self.shards]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "dataset.json") -> DatasetCard:
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name not in ("dataset_id", "shards", "decode")}
        missing = sorted(required - set(data))
        if missing:
            raise DataError(f"{where} is not a dataset card: it lacks {', '.join(missing)} (re-run `exifray ingest`)")
        values = {key: value for key, value in data.items() if key in names}
        try:
            values["shards"] = tuple(ShardFile(**entry) for entry in data.get("shards") or ())
        except TypeError as exc:
            raise DataError(f"{where}: malformed shard manifest: {exc}") from None
        for key in ("inputs", "classes", "concept_filter"):
            values[key] = tuple(values[key])
        values["image_sizes"] = tuple(int(size) for size in values["image_sizes"])
        return cls(**values)


def _filesystem(dataset_dir: str | Path) -> tuple[pafs.FileSystem, str]:
    try:
        return filesystem_and_path(dataset_dir)
    except (ValueError, OSError) as exc:
        raise InputNotFoundError(f"cannot open the dataset {dataset_dir}: {exc}") from None


def open_dataset(dataset_dir: str | Path) -> tuple[pafs.FileSystem, str, DatasetCard]:
    """(filesystem, root inside it, card) of a DATASET DIR, local or any pyarrow URI."""
    fs, root = _filesystem(dataset_dir)
    return fs, root, _read_card(fs, root, dataset_dir)


def read_card(dataset_dir: str | Path) -> DatasetCard:
    return open_dataset(dataset_dir)[2]


def _read_card(fs: pafs.FileSystem, root: str, dataset_dir: str | Path) -> DatasetCard:
    import pyarrow.fs as pafs

    card_path = f"{root}/{schema.DATASET_CARD}"
    try:
        if fs.get_file_info(root).type == pafs.FileType.NotFound:
            raise InputNotFoundError(f"dataset directory does not exist: {dataset_dir}")
        if fs.get_file_info(card_path).type != pafs.FileType.File:
            raise DataError(f"not a dataset dir (no {schema.DATASET_CARD}): {dataset_dir}; create one with "
                            f"`exifray ingest`")
        with fs.open_input_stream(card_path) as stream:
            text = stream.readall().decode("utf-8")
    except ExifrayError:
        raise
    except OSError as exc:
        raise InputNotFoundError(f"cannot read the dataset {dataset_dir}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{dataset_dir}/{schema.DATASET_CARD} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{dataset_dir}/{schema.DATASET_CARD} is not a JSON object")
    return DatasetCard.from_dict(data, f"{dataset_dir}/{schema.DATASET_CARD}")
