"""A trial process's TensorFlow setup (thread pools, GPU memory growth) and measuring a model's latency."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)


def configure_tensorflow(threads: int | None) -> None:
    """Thread pools sized to the trial's CPUs and GPU memory growth, before TF runs any op."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: growth was set (or not) earlier
            logger.debug("GPU memory growth could not be changed after TF initialised")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        except RuntimeError:
            logger.debug("TF thread pools already fixed in this process")



def inference_ms(model: keras.Model, inputs: dict[str, np.ndarray], batch_size: int) -> float:
    """Milliseconds per photo for batched prediction, after one warm-up call."""
    n = len(next(iter(inputs.values())))
    if n == 0:
        return float("nan")
    sample = {key: value[: min(n, 256)] for key, value in inputs.items()}
    model.predict(sample, batch_size=batch_size, verbose=0)
    started = time.perf_counter()
    model.predict(sample, batch_size=batch_size, verbose=0)
    return (time.perf_counter() - started) * 1000 / len(next(iter(sample.values())))
