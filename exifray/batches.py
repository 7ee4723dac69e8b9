"""A trial's model inputs and how they reach Keras: by name (`model_inputs`), one batch at a time out of arrays
shared through Ray's object store or streamed from the shards (`array_batches`), the same batches as a tf.data
pipeline for phases whose steps are small (`dataset_batches`), and predictions over a whole split in batches of one
shape (`predict_arrays`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from exifray.config import TrialConfig
from exifray.data.dataset import SplitArrays
from exifray.exif.encode import ExifEncoder

if TYPE_CHECKING:
    from collections.abc import Iterator

    import keras
    import tensorflow as tf

# A batch: model inputs by name, with targets when training.
Batch = tuple[dict[str, np.ndarray], np.ndarray] | tuple[dict[str, np.ndarray]]


def model_inputs(split: SplitArrays, config: TrialConfig, encoder: ExifEncoder) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    if config.uses_image:
        inputs["image"] = split.pixels
    if config.uses_exif:
        inputs["exif"] = encoder.transform(split.exif_columns())
    return inputs


def predict_arrays(model: keras.Model, inputs: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """The model's outputs for every row, predicted in batches of exactly `batch_size`: the last batch is padded
    with copies of its final row, whose outputs are dropped. A shorter last batch would trace a second predict
    function (0.1 s for a small head, more for a backbone) every time a trial predicts a split of a new size.
    Batch by batch through `predict_on_batch`: `model.predict` builds a new data adapter and iterator per call,
    0.08 s that a trial predicting its validation split every epoch paid every epoch."""
    n = len(next(iter(inputs.values())))
    batches = array_batches(inputs, None, batch_size, pad=True)
    outputs = [np.asarray(model.predict_on_batch(batches[index][0])) for index in range(len(batches))]
    return np.concatenate(outputs)[:n]


def array_batches(inputs: dict[str, np.ndarray], targets: np.ndarray | None, batch_size: int, *,
                  shuffle: bool = False, seed: int = 0, start_epoch: int = 0,
                  pad: bool = False) -> keras.utils.PyDataset:
    """A Keras PyDataset that slices one batch at a time out of the given arrays.

    Handing Keras whole numpy arrays makes it convert them into TensorFlow tensors, i.e. one private copy
    of the dataset per trial process. Slicing batch by batch keeps the arrays where they are: in a sweep,
    read-only views of the one copy in Ray's object store that every trial on the node shares. Streamed images
    (`ShardImages`) are sliced the same way; they decide a shuffled epoch's order (within buffers of shards,
    seeded by seed and epoch) and read ahead of it, and unshuffled passes go in shard order."""
    import keras

    from exifray.data.stream import ShardImages

    n = len(next(iter(inputs.values())))
    streamed = None
    for value in inputs.values():
        if isinstance(value, ShardImages):
            streamed = value

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = start_epoch
            self.order = np.arange(n)
            self.orders = _shuffled_orders(n, seed, start_epoch)
            self._new_order()

        def _new_order(self) -> None:
            if streamed is not None:
                self.order = streamed.epoch_order(seed, self.epoch) if shuffle else np.arange(n)
                if not shuffle:
                    streamed.sequential()
            elif shuffle:
                self.order = next(self.orders)

        def __len__(self) -> int:
            return math.ceil(n / batch_size)

        def __getitem__(self, index: int) -> Batch:
            rows = self.order[index * batch_size:(index + 1) * batch_size]
            if pad and len(rows) < batch_size:  # `predict_arrays`: every batch of one shape
                rows = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows))])
            x = {key: value[rows] for key, value in inputs.items()}
            return (x, targets[rows]) if targets is not None else (x,)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self._new_order()

    return ArrayBatches()


def _shuffled_orders(n: int, seed: int, start_epoch: int) -> Iterator[np.ndarray]:
    """The row orders of a shuffled `array_batches`, one per call of its `on_epoch_end` (and one when it is made):
    an order shuffled again and again by a generator seeded by (seed, start_epoch), so that a resumed trial does not
    replay epoch 1's order."""
    rng = np.random.default_rng((seed, start_epoch))
    order = np.arange(n)
    while True:
        rng.shuffle(order)
        yield order.copy()


def dataset_batches(inputs: dict[str, np.ndarray], targets: np.ndarray, batch_size: int, *, seed: int,
                    start_epoch: int, epochs: int) -> tf.data.Dataset:
    """`epochs` epochs of the shuffled batches `model.fit(array_batches(...))` trains on, as one tf.data pipeline:
    fit it with `steps_per_epoch=math.ceil(n / batch_size)`.

    For phases whose steps take milliseconds (a head on cached features, an EXIF-only model), where Keras' own
    `PyDataset` feed, a Python generator called batch by batch, cost 50-70 ms an epoch of 700 photos against 20-30 ms
    here. The rows are still sliced out of the shared arrays by numpy (no private copy per trial), one call a batch
    inside the pipeline. The orders are `array_batches`' own: Keras reads a `PyDataset`'s first batches to learn
    their shapes and then ends an epoch before the first one trains, so epoch k trains on the (k + 1)-th order
    (`tests/unit/test_batches.py` trains both feeds through Keras and compares)."""
    import tensorflow as tf

    n, keys = len(targets), list(inputs)
    arrays = _Arrays([*(inputs[key] for key in keys), targets])
    orders = _shuffled_orders(n, seed, start_epoch)
    next(orders)  # the order a `PyDataset` is made with only serves Keras' look at its shapes
    # every epoch's order up front (4 bytes a row an epoch, next to the features' kilobytes): a tensor is made in
    # a millisecond where `Dataset.from_generator` took 12 of a trial's start
    rows = np.stack([next(orders) for _ in range(epochs)]).astype(np.int32 if n < 2**31 else np.int64)

    def batch(rows: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        # TensorFlow keeps a numpy_function's Python function until `keras.backend.clear_session()`: it holds the
        # arrays weakly, and the pipeline (through this function, traced with it) holds them while it lives
        taken = tf.numpy_function(arrays.taker(), [rows], [tf.as_dtype(array.dtype) for array in arrays.arrays],
                                  stateful=False)
        for tensor, array in zip(taken, arrays.arrays, strict=True):
            tensor.set_shape((None, *array.shape[1:]))
        return dict(zip(keys, taken[:-1], strict=True)), taken[-1]

    def batches_of(order: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    # Plain graph code, not converted by AutoGraph: it writes each converted function's source to a file in TMPDIR
    # that only a clean interpreter exit removes, and a Ray worker is stopped without one
    plain = tf.autograph.experimental.do_not_convert
    return tf.data.Dataset.from_tensor_slices(rows).flat_map(plain(batches_of)).map(plain(batch)).prefetch(2)


class _Arrays:
    """The arrays a `dataset_batches` pipeline slices, and a function slicing them that holds them weakly."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays

    def taker(self) -> Callable[[np.ndarray], list[np.ndarray]]:
        source = weakref.ref(self)

        def take(rows: np.ndarray) -> list[np.ndarray]:
            held = source()
            if held is None:
                raise RuntimeError("the arrays of this dataset_batches pipeline are gone")
            return [array[rows] for array in held.arrays]

        return take
