"""Streamed pixels (`ShardImages`) against the same images held in memory, on real Parquet shard files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exifray import schema
from exifray.config import DataConfig
from exifray.data.card import DatasetCard
from exifray.data.stream import ShardImages, stream_buffer_shards
from exifray.errors import ConfigError, DataError

SIZE = 4


def _shards(folder: Path, rows: list[int], seed: int = 0) -> tuple[ShardImages, np.ndarray, list[str]]:
    """Shard files of random images with a split column; the train split streamed, and its images in memory."""
    rng = np.random.default_rng(seed)
    paths, per_shard, memory = [], [], []
    for index, count in enumerate(rows):
        images = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)
        splits = np.array(["train", "val", "train", "test"] * count)[:count]
        table = pa.table({schema.COL_SPLIT: splits.tolist(),
                          schema.image_column(SIZE): [image.tobytes() for image in images]})
        path = folder / f"part-{index:05d}.parquet"
        pq.write_table(table, path)
        paths.append(str(path))
        chosen = np.flatnonzero(splits == "train")
        per_shard.append(chosen)
        memory.append(images[chosen])
    return ShardImages(tuple(paths), tuple(per_shard), SIZE, buffer_shards=2), np.concatenate(memory), paths


def test_streamed_rows_are_the_images_in_memory_by_slice_index_and_position(tmp_path: Path) -> None:
    images, memory, _ = _shards(tmp_path, [10, 7, 12, 3, 9])
    assert len(images) == len(memory) and images.shape == memory.shape and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:], memory)
    np.testing.assert_array_equal(images[3:17], memory[3:17])
    rows = np.array([20, 0, 5, 5, 19, 1])
    np.testing.assert_array_equal(images[rows], memory[rows])
    np.testing.assert_array_equal(images[4], memory[4])
    with pytest.raises(IndexError, match="out of range"):
        images[np.array([len(memory)])]


def test_every_epoch_is_a_seeded_permutation_shuffled_within_buffers(tmp_path: Path) -> None:
    images, memory, _ = _shards(tmp_path, [10, 7, 12, 3, 9, 8])
    starts = np.concatenate([[0], np.cumsum([5, 4, 6, 2, 5, 4])])  # train rows per shard (2 of every 4 rows)
    shard_of = np.searchsorted(starts, np.arange(len(memory)), side="right") - 1
    orders = [images.epoch_order(seed=3, epoch=epoch) for epoch in range(4)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(len(memory)))  # every photo exactly once
        visited: list[int] = []  # shards in the order the epoch first touches them
        for shard in shard_of[order].tolist():
            if shard not in visited:
                visited.append(shard)
        _buffer_bounds(order, shard_of, visited)  # buffers of two shards, one after the other, never interleaved
    assert len({tuple(order) for order in orders}) == 4  # a new order every epoch
    np.testing.assert_array_equal(images.epoch_order(seed=3, epoch=2), orders[2])  # a resumed epoch: same order
    assert not np.array_equal(images.epoch_order(seed=4, epoch=2), orders[2])


def _buffer_bounds(order: np.ndarray, shard_of: np.ndarray, seen: list[int]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for i in range(0, len(seen), 2):
        members = set(seen[i:i + 2])
        end = start
        while end < len(order) and shard_of[order[end]] in members:
            end += 1
        assert set(shard_of[order[start:end]].tolist()) == members
        bounds.append((start, end))
        start = end
    assert start == len(order)  # the buffers tile the epoch: no buffer's rows interleave with another's
    return bounds


def test_one_epoch_in_order_reads_each_shard_once_and_holds_at_most_two_buffers(tmp_path: Path) -> None:
    images, memory, _ = _shards(tmp_path, [8] * 12)
    order = images.epoch_order(seed=0, epoch=0)
    for start in range(0, len(order), 5):  # batches of 5, as Keras asks for them
        rows = order[start:start + 5]
        np.testing.assert_array_equal(images[rows], memory[rows])
        assert len(images._cache) <= 2 * images.buffer_shards
    assert images.reads == 12  # each shard read once (the prefetched ones were used, none read twice)


def test_streamed_images_pickle_without_pixels_or_threads(tmp_path: Path) -> None:
    images, memory, _ = _shards(tmp_path, [6, 6])
    images[:3]  # a cache and a reader thread exist now
    copy = pickle.loads(pickle.dumps(images))
    assert len(pickle.dumps(images)) < 2000 and copy.reads == 0 and not copy._cache
    np.testing.assert_array_equal(copy[:], memory)


def test_a_shard_that_disappeared_is_a_clear_error(tmp_path: Path) -> None:
    images, _, paths = _shards(tmp_path, [6, 6])
    Path(paths[1]).unlink()
    with pytest.raises(DataError, match=r"cannot read the shard .*part-00001.parquet .*re-ingested"):
        images[:]


def _fake_card(photos: int, shard_rows: list[int]) -> DatasetCard:
    from types import SimpleNamespace

    return SimpleNamespace(photos=photos, shards=[SimpleNamespace(rows=r) for r in shard_rows])  # type: ignore


def test_auto_streams_only_over_the_budget_and_sizes_buffers_from_it() -> None:
    card = _fake_card(10_000, [500] * 20)  # 10,000 photos: at 64 px 117 MiB of images; a shard 5.9 MiB
    assert stream_buffer_shards(DataConfig(), card, [64], 2, object_store_bytes=1e9) is None  # 117 MiB < 477 MiB
    assert stream_buffer_shards(DataConfig(budget_mb=200), card, [64], 2, 0) is None
    assert stream_buffer_shards(DataConfig(stream="never", budget_mb=1), card, [64], 2, 0) is None
    # over budget: 60 MiB for 2 trials → 30 MiB each → a shard's read (2 × 5.9 MiB) and two buffers of 1 shard fit
    assert stream_buffer_shards(DataConfig(budget_mb=60), card, [64], 2, 0) == 1
    assert stream_buffer_shards(DataConfig(budget_mb=64), card, [64], 1, 0) == 4  # (64 - 11.7) / 11.7; not 64 / 11.7
    assert stream_buffer_shards(DataConfig(stream="always"), card, [64], 1, 1e9) >= 1
    assert stream_buffer_shards(DataConfig(stream="always", budget_mb=0.001), card, [64], 4, 0) == 1  # one shard min
    assert stream_buffer_shards(DataConfig(), card, [64], 1, 0) is None  # no known budget: never on auto


@pytest.mark.parametrize("data, message", [
    ({"stream": "sometimes"}, "data.stream must be one of auto, always, never, got 'sometimes'"),
    ({"budget_mb": 0}, "data.budget_mb must be a number of MiB > 0, got 0"),
    ({"budget_mb": "lots"}, "data.budget_mb must be a number of MiB > 0, got 'lots'"),
    ({"streaming": True}, "data.streaming: unknown key; allowed: stream, budget_mb"),
    ("always", "data must be a mapping with stream and budget_mb, got 'always'"),
])
def test_bad_data_settings_name_the_key_and_value(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        DataConfig.from_yaml(data)
    assert str(error.value) == message
