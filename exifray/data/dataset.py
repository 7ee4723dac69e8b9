"""Reading a DATASET DIR into arrays for training (pyarrow only: no Ray, no TensorFlow).

    arrays = load_arrays("data/dataset", image_size=50)
    arrays = load_arrays("s3://bucket/dataset", image_size=50)   # any pyarrow filesystem URI, read-only

The sweep loads these once and puts them in the Ray object store; `exifray train` loads them directly. A dataset
larger than the sweep's data budget is streamed: its pixels stay in the shards and trials read them
(`load_arrays(..., stream_buffer_shards=N)`, see `exifray.data.stream`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from exifray import schema
from exifray.data.card import DatasetCard, open_dataset, read_card
from exifray.data.stream import ShardImages, fixed_width_pixels
from exifray.errors import DataError
from exifray.exif.encode import ExifEncoder
from exifray.exif.tags import TAG_NAMES
from exifray.fsutil import is_uri

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

__all__ = ["DatasetArrays", "DatasetCard", "SplitArrays", "load_arrays", "read_card"]


@dataclass(frozen=True)
class SplitArrays:
    photo_ids: np.ndarray  # (n,) str
    images: np.ndarray | ShardImages | None  # (n, s, s, 3) uint8 (read from the shards when streamed); None: no pixels
    exif_raw: np.ndarray  # (n, len(TAG_NAMES)) float64, NaN = missing
    targets: np.ndarray  # (n, classes) float32: one-hot (single-label) or multi-hot

    def __len__(self) -> int:
        return len(self.photo_ids)

    @property
    def pixels(self) -> np.ndarray:
        """The images as the array models slice batches from (streamed images slice the same way)."""
        if self.images is None:
            raise DataError("the split was loaded without images")
        return cast("np.ndarray", self.images)

    def exif_columns(self) -> dict[str, np.ndarray]:
        return {tag: self.exif_raw[:, i] for i, tag in enumerate(TAG_NAMES)}


@dataclass(frozen=True)
class DatasetArrays:
    card: DatasetCard
    image_size: int | None
    train: SplitArrays
    val: SplitArrays
    test: SplitArrays

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    @property
    def multi_label(self) -> bool:
        return self.card.multi_label

    def close(self) -> None:
        """Stop reading streamed pixels (their reader threads end); arrays in memory need nothing."""
        for split in (self.train, self.val, self.test):
            if isinstance(split.images, ShardImages):
                split.images.close()

    @property
    def encoder(self) -> ExifEncoder:
        return self.card.encoder

    @property
    def nbytes(self) -> int:
        return sum(getattr(s, name).nbytes for s in (self.train, self.val, self.test)
                   for name in ("images", "exif_raw", "targets") if getattr(s, name) is not None)


def load_arrays(dataset_dir: str | Path, image_size: int | None, *, stream_buffer_shards: int | None = None
                ) -> DatasetArrays:
    """Every split as numpy arrays; `image_size=None` skips pixels (EXIF-only training). With
    `stream_buffer_shards`, pixels stay in the shards: each split's `images` is a `ShardImages` that reads
    them while a trial trains (shuffled within buffers of that many shards); the rest is loaded as usual."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, root, card = open_dataset(dataset_dir)
    if image_size is not None:
        card.resolve_image_size(image_size)
    shard_paths = _shard_paths(fs, root, card, dataset_dir)
    columns = [schema.COL_PHOTO_ID, schema.COL_LABELS, schema.COL_SPLIT, *(schema.exif_column(t) for t in TAG_NAMES)]
    streaming = image_size is not None and stream_buffer_shards is not None
    if image_size is not None and not streaming:
        columns.append(schema.image_column(image_size))
    tables = [pq.read_table(path, columns=columns, filesystem=fs) for path in shard_paths]  # in manifest order
    table = pa.concat_tables(tables)
    class_index = {name: i for i, name in enumerate(card.classes)}
    split_column = np.asarray(table[schema.COL_SPLIT].to_pylist())
    shard_starts = np.cumsum([0, *(t.num_rows for t in tables)])
    result = {}
    for split in schema.SPLITS:
        rows = np.flatnonzero(split_column == split)
        result[split] = _split_arrays(table.take(rows), class_index, None if streaming else image_size)
        if streaming:
            assert image_size is not None and stream_buffer_shards is not None
            # each shard's rows of this split, counted inside the shard (the table is the shards in order)
            pieces = np.split(rows, np.searchsorted(rows, shard_starts[1:-1]))
            per_shard = tuple(piece - start for piece, start in zip(pieces, shard_starts[:-1], strict=True))
            # val and test are only read in order (predictions): one shard ahead is enough
            images = ShardImages(tuple(_location(dataset_dir, path) for path in shard_paths), per_shard, image_size,
                                 buffer_shards=stream_buffer_shards if split == "train" else 1)
            result[split] = replace(result[split], images=images)
    del table, tables
    pa.default_memory_pool().release_unused()  # the Parquet read's buffers: Arrow's allocator would keep them
    return DatasetArrays(card, image_size, result["train"], result["val"], result["test"])


def _location(dataset_dir: str | Path, path: str) -> str:
    """A path inside the dataset's filesystem as a location `filesystem_and_path` opens anywhere."""
    text = str(dataset_dir)
    return f"{text.split('://', 1)[0]}://{path}" if is_uri(text) else path


def shard_files(dataset_dir: str | Path) -> list[str]:
    """The Parquet files a DATASET DIR's card lists (paths inside its filesystem: local paths for a local dir)."""
    fs, root, card = open_dataset(dataset_dir)
    return _shard_paths(fs, root, card, dataset_dir)


def _shard_paths(fs: pafs.FileSystem, root: str, card: DatasetCard, dataset_dir: str | Path) -> list[str]:
    """The card's manifest (a card from before version 2 has none: then every shards/part-*.parquet)."""
    import pyarrow.fs as pafs

    if card.shards:
        return [f"{root}/{shard.path}" for shard in card.shards]
    shards = fs.get_file_info(pafs.FileSelector(f"{root}/{schema.SHARDS_DIR}", allow_not_found=True))
    paths = sorted(info.path for info in shards
                   if info.type == pafs.FileType.File and fnmatch.fnmatch(Path(info.path).name, "part-*.parquet"))
    if not paths:
        raise DataError(f"dataset {dataset_dir} has no shards/part-*.parquet files")
    return paths


def _split_arrays(table: pa.Table, class_index: dict[str, int], image_size: int | None) -> SplitArrays:
    n = table.num_rows
    targets = np.zeros((n, len(class_index)), dtype=np.float32)
    for row, labels in enumerate(table[schema.COL_LABELS].to_pylist()):
        for label in labels:
            targets[row, class_index[label]] = 1.0
    exif = np.column_stack([table[schema.exif_column(t)].to_numpy(zero_copy_only=False).astype(np.float64)
                            for t in TAG_NAMES]) if n else np.zeros((0, len(TAG_NAMES)))
    images = None
    if image_size is not None:
        images = fixed_width_pixels(table[schema.image_column(image_size)], image_size).copy()  # one copy, owned
    return SplitArrays(np.asarray(table[schema.COL_PHOTO_ID].to_pylist(), dtype=object), images, exif, targets)

