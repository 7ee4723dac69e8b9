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


def inference_ms(model: keras.Model, inputs: dict[str, np.ndarray], batch_size: int, *, batches: int = 4) -> float:
    """Milliseconds per photo for batched prediction: one batch first (which traces the predict function), then
    `batches` full batches timed (fewer when there are fewer photos). Tracing dominates a small model's first call
    (MobileNetV2 at 96 px, 2 cores: 0.8 s for the first batch, 0.09 s for each further one), so the warm-up is one
    batch, and the timed batches are all full (a last partial batch would be traced again)."""
    n = len(next(iter(inputs.values())))
    if n == 0:
        return float("nan")
    batch = min(batch_size, n)
    timed = max(1, min(n, batches * batch) // batch) * batch
    model.predict({key: value[:batch] for key, value in inputs.items()}, batch_size=batch, verbose=0)
    sample = {key: value[:timed] for key, value in inputs.items()}
    started = time.perf_counter()
    model.predict(sample, batch_size=batch, verbose=0)
    return (time.perf_counter() - started) * 1000 / timed
