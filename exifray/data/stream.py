"""Image columns read from a dataset's Parquet shards while a trial trains, for data that outgrows memory.

    images = ShardImages.of(card_location, shards, rows_per_shard, image_size, buffer_shards=2)
    order = images.epoch_order(seed, epoch)       # every photo once, shuffled within buffers of shards
    batch = images[order[:32]]                    # a (32, s, s, 3) uint8 array, like a numpy array's rows

A `ShardImages` stands in for the (n, s, s, 3) uint8 array of one split: it holds no pixels, only where they
are (shard files, local or any pyarrow URI, and which rows of each belong to the split), so it pickles small
and every trial process reads the shards itself. Reading is by whole shard (a shard is one Parquet row group):
a small cache keeps the shards of the current and the next buffer, and a background thread reads the next
buffer's shards while the current one trains (prefetching). Batches must come in order (Keras' `fit` with
`shuffle=False`): out of order they are still right, but most of them re-read shards. Epoch orders are seeded
by (seed, epoch) alone, so a trial resumed at epoch k sees the same order as one that never stopped.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from exifray import schema
from exifray.config import DataConfig
from exifray.data.card import DatasetCard
from exifray.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class ShardImages:
    """One split's image column, read from the shards on demand (see the module docstring)."""

    shards: tuple[str, ...]  # full locations: local paths or URIs (`s3://bucket/dataset/versions/.../part-00000.parquet`)
    rows: tuple[np.ndarray, ...]  # per shard: the split's row numbers inside it, ascending
    image_size: int
    buffer_shards: int = 2  # shards shuffled together; the cache holds two buffers
    _cache: OrderedDict[int, tuple[int, Future[np.ndarray]]] = field(default_factory=OrderedDict, init=False,
                                                                     repr=False)  # shard → (slot, its read)
    _plan: list[int] = field(default_factory=list, init=False, repr=False)  # shard order of the current pass
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    reads: int = field(default=0, init=False)  # shard files read so far (a re-read after eviction counts again)

    def __post_init__(self) -> None:
        counts = np.array([len(r) for r in self.rows], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._shard_of = np.repeat(np.arange(len(self.rows)), counts)
        self._plan = list(range(len(self.shards)))
        self._slot_rows = int(counts.max()) if len(counts) else 0
        self._slots: list[np.ndarray | None] = [None] * self.capacity
        self._free = list(range(self.capacity))

    # --- what numpy users expect of the array this stands in for ------------------------------------------

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.image_size, self.image_size, 3)

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def nbytes(self) -> int:
        return 0  # nothing held: what it reads is counted by the cache's bound, not here

    def __getitem__(self, key: slice | int | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            positions = np.arange(*key.indices(len(self)))
        else:
            positions = np.asarray(key)
            positions = np.where(positions < 0, positions + len(self), positions)  # numpy's negative indices
        flat = np.atleast_1d(positions).astype(np.int64)
        if len(flat) and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} rows")
        out = np.empty((len(flat), self.image_size, self.image_size, 3), dtype=np.uint8)
        shards = self._shard_of[flat]
        for shard in dict.fromkeys(shards.tolist()):  # first-touch order
            chosen = shards == shard
            out[chosen] = self._shard(shard)[flat[chosen] - self._starts[shard]]
        return out[0] if np.ndim(positions) == 0 else out

    def close(self) -> None:
        """End the reader thread and drop the cached shards (a trial's end; reading again starts a new reader)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._cache.clear()
            self._slots = [None] * self.capacity
            self._free = list(range(self.capacity))
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __getstate__(self) -> dict[str, object]:
        return {"shards": self.shards, "rows": self.rows, "image_size": self.image_size,
                "buffer_shards": self.buffer_shards}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # --- orders ------------------------------------------------------------------------------------------------

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        """A permutation of every position: shards in a seeded order, cut into buffers of `buffer_shards`, rows
        shuffled within each buffer. Reading in this order touches at most two buffers per batch."""
        rng = np.random.default_rng((seed, epoch))
        plan = rng.permutation(len(self.shards)).tolist()
        order = []
        for start in range(0, len(plan), self.buffer_shards):
            members = plan[start:start + self.buffer_shards]
            positions = np.concatenate([np.arange(self._starts[s], self._starts[s + 1]) for s in members])
            order.append(rng.permutation(positions))
        with self._lock:
            self._plan = plan
        return np.concatenate(order) if order else np.zeros(0, dtype=np.int64)

    def sequential(self) -> None:
        """The next reads go in position order (prediction): prefetch follows the shards' own order."""
        with self._lock:
            self._plan = list(range(len(self.shards)))

    # --- reading -----------------------------------------------------------------------------------------------

    def _shard(self, shard: int) -> np.ndarray:
        """The split's rows of one shard, from the cache or read now; schedules the rest of its buffer and the
        next buffer's shards. Once a batch reaches a buffer, the one before is done with (a batch that straddles
        two buffers copies its rows of the earlier one first), so its slots take the next buffer's reads."""
        with self._lock:
            wanted = [shard, *(s for s in self._current_and_next(shard) if s != shard)]
            self._evict(keep=set(wanted), room=sum(s not in self._cache for s in wanted))
            for member in wanted:
                if member not in self._cache:
                    self._submit(member)
            self._cache.move_to_end(shard)
            future = self._cache[shard][1]
        return future.result()

    def _current_and_next(self, shard: int) -> list[int]:
        """The shards of the buffer `shard` is in and of the buffer after it, in the current plan."""
        if shard not in self._plan:
            return []
        buffer = self._plan.index(shard) // self.buffer_shards
        return self._plan[buffer * self.buffer_shards:(buffer + 2) * self.buffer_shards]

    @property
    def capacity(self) -> int:
        """Shards held at most: two buffers (the one training, the one read ahead)."""
        return 2 * self.buffer_shards

    def _submit(self, shard: int) -> None:
        if self._pool is None:
            import pyarrow as pa

            # A streaming process reads whole shards again and again. Arrow's default allocator (mimalloc) keeps
            # the freed read buffers of its threads (~20 MiB here whatever the buffer size: found by
            # jobs/bench_stream.py); the system allocator returns them (`release_unused` trims the heap).
            # Buffers already allocated keep their own pool, so switching is safe at any time.
            pa.set_memory_pool(pa.system_memory_pool())
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exifray-shard-reader")
        slot = self._free.pop()
        self._cache[shard] = (slot, self._pool.submit(self._read, shard, slot))

    def _evict(self, keep: set[int], room: int) -> None:
        for shard in list(self._cache):  # least recently used first
            if len(self._cache) + room <= self.capacity:
                break
            if shard not in keep:
                self._free.append(self._cache.pop(shard)[0])

    def _read(self, shard: int, slot: int) -> np.ndarray:
        """Read one shard's image column into a slot: slots are allocated once and reused, so streaming holds a
        fixed amount of memory (fresh arrays per read would leave the allocator holding freed ones)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from exifray.fsutil import filesystem_and_path

        try:
            fs, path = filesystem_and_path(self.shards[shard])
            # ParquetFile.read, not read_table: no dataset scanner, no pre-buffering, no reader threads of its own
            table = pq.ParquetFile(path, filesystem=fs).read(columns=[schema.image_column(self.image_size)],
                                                             use_threads=False)
        except OSError as exc:  # FileNotFoundError included
            raise DataError(f"cannot read the shard {self.shards[shard]} ({type(exc).__name__}: {exc}); a streaming "
                            "sweep reads the dataset version it started with: was the dataset re-ingested since?"
                            ) from exc
        self.reads += 1
        memory = self._slots[slot]
        if memory is None:
            memory = self._slots[slot] = np.empty((self._slot_rows, self.image_size, self.image_size, 3), np.uint8)
        rows = self.rows[shard]
        out = memory[:len(rows)]
        np.take(fixed_width_pixels(table.column(0), self.image_size), rows, axis=0, out=out)
        del table
        pa.default_memory_pool().release_unused()  # Arrow's allocator would keep the freed read buffers
        return out


def stream_buffer_shards(config: DataConfig, card: DatasetCard, sizes: Sequence[int], max_concurrent: int,
                         object_store_bytes: float) -> int | None:
    """Whether a sweep streams its pixels, and with how many shards per shuffle buffer (None: in memory).

    `auto` streams when the image columns the sweep loads exceed the budget. A streaming trial holds two buffers
    of its split's rows (the one training, the one being prefetched) and the shard being read, so a buffer gets
    half of what remains of one of `max_concurrent` trials' share of the budget after that read, and at least
    one shard."""
    if config.stream == "never" or not sizes:
        return None
    budget = config.budget_bytes(object_store_bytes)
    needed = sum(card.photos * size * size * 3 for size in sizes)
    if config.stream == "auto" and needed <= budget:
        logger.info("data: %.0f MiB of images fit the %.0f MiB budget: trials read them from the object store",
                    needed / 2**20, budget / 2**20)
        return None
    shard_rows = max((shard.rows for shard in card.shards), default=card.photos)
    shard_bytes = max(1, shard_rows * max(sizes) ** 2 * 3)
    read_bytes = 2 * shard_bytes  # the read in flight: one shard's column as stored and decoded, until copied
    # no budget known (no object store size): buffers of 2 shards
    share = budget / max(1, max_concurrent) if math.isfinite(budget) else 4 * shard_bytes + read_bytes
    buffer = max(1, int((share - read_bytes) / (2 * shard_bytes)))
    logger.info("data: streaming %.0f MiB of images from the shards (%s; budget %.0f MiB): shuffle buffers of %d "
                "shard(s), ~%.0f MiB per trial", needed / 2**20,
                "stream: always" if config.stream == "always" else "over budget", budget / 2**20, buffer,
                (2 * buffer * shard_bytes + read_bytes) / 2**20)
    return buffer


def fixed_width_pixels(column: Any, image_size: int) -> np.ndarray:
    """A binary column of (s, s, 3) uint8 images as an (n, s, s, 3) view of Arrow's buffer: no Python bytes
    objects, no copy (every value has the same length, so the values lie back to back)."""
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = image_size * image_size * 3
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32 if pa.types.is_binary(array.type) else np.int64)
    offsets = offsets[array.offset:array.offset + len(array) + 1]
    if len(array) and not np.all(np.diff(offsets) == width):
        raise ValueError(f"image column values are not all {width} bytes ({image_size} px RGB)")
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8) if len(array) else np.zeros(0, np.uint8)
    return data[offsets[0]:offsets[0] + len(array) * width].reshape(len(array), image_size, image_size, 3)
