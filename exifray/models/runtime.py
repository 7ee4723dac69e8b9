"""A trial process's TensorFlow setup (thread pools, GPU memory growth) and measuring a model's latency."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

    from exifray.models.fusion import BuiltModel

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


def forget_custom_gradients() -> None:
    """Drop the gradient functions TensorFlow registered for the `tf.custom_gradient` calls it traced. In graph mode
    each such call (the swish of every EfficientNet block, for one) registers its gradient globally under a new name,
    and the registration holds the graph it was traced in: nothing ever drops it, so every graph a trial traced
    through one stayed alive for the process's life. Only for a warm worker between trials:
    a registration is needed only while its own graph is differentiated, inside the trace that made it."""
    from tensorflow.python.framework import ops

    registered = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registered, dict):  # (TensorFlow's private registry moved: nothing to drop)
        logger.warning("TensorFlow's gradient registry was not found: graphs traced through tf.custom_gradient "
                       "stay alive in a reused worker")
        return
    for name in [name for name in registered if isinstance(name, str) and name.startswith("CustomGradient-")]:
        del registered[name]


@contextlib.contextmanager
def without_graph_rewrites(active: bool = True) -> Iterator[None]:
    """While open, functions TensorFlow traces and first runs skip Grappler's graph rewrites (its meta optimizer),
    which are decided once per function, when it is first run. For a phase that trains a few dense layers (a head on
    cached features, an EXIF-only MLP) they have nothing to fuse or re-layout that pays for the pass: a fusion
    head's first epoch took 0.8-0.9 s instead of 1.0-1.4 s (MobileNetV2's 1,280 features, 1,000 photos, one
    thread), with the same losses. Convolutional phases keep them (on a GPU they choose layouts and fused kernels)."""
    if not active:
        yield
        return
    import tensorflow as tf

    before = bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def inference_ms(model: keras.Model, inputs: dict[str, np.ndarray], batch_size: int, *, batches: int = 4) -> float:
    """Milliseconds per photo for batched prediction: one batch first (which traces the predict function, unless
    the model has already predicted batches of this shape), then `batches` full batches timed (fewer when there are
    fewer photos). Batch by batch (`predict_on_batch`), as a trial scores its splits: a traced predict function is
    shared, and `predict()`'s data adapter is not timed. Tracing dominates a small model's first call (MobileNetV2
    at 96 px, 2 cores: 0.8 s for the first batch, 0.09 s for each further one), so the warm-up is one batch, and
    the timed batches are all full (a last partial batch would be traced again)."""
    n = len(next(iter(inputs.values())))
    if n == 0:
        return float("nan")
    batch = min(batch_size, n)
    timed = max(1, min(n, batches * batch) // batch)
    model.predict_on_batch({key: value[:batch] for key, value in inputs.items()})
    started = time.perf_counter()
    for index in range(timed):
        model.predict_on_batch({key: value[index * batch:(index + 1) * batch] for key, value in inputs.items()})
    return (time.perf_counter() - started) * 1000 / (timed * batch)


# A worker process's measured frozen backbones, by what their latency depends on: a warm worker measures each once.
_FROZEN_BACKBONES: dict[tuple[object, ...], tuple[float, int]] = {}


def frozen_backbone_cost(built: BuiltModel, images: np.ndarray, batch_size: int) -> tuple[float, int]:
    """(milliseconds per photo, parameters) of a head-only trial's image branch before its head: preprocessing,
    the frozen backbone with its weights, pooling. Built and measured apart from the trial's own model (which
    never builds it), once per worker process and (backbone, weights, image size, batch size, dtype policy,
    threads); a head's latency on the pooled features adds to it (`inference_ms`), an estimate of the full
    model's, labelled so (`inference_ms_estimated`)."""
    import os
    from dataclasses import replace

    import keras

    from exifray.models.fusion import image_branch

    assert built.spec is not None and built.weights is not None and built.image_size is not None
    weights = built.weights
    stamp = (os.stat(weights).st_mtime_ns, os.stat(weights).st_size) if weights != "imagenet" else ()
    key = (built.spec.name, weights, stamp, built.image_size, batch_size, keras.mixed_precision.global_policy().name,
           built.config.threads)
    if key not in _FROZEN_BACKBONES:
        image = image_branch(replace(built.config, augment=False), built.image_size, built.spec, weights)
        branch = keras.Model({"image": image.image_input}, image.pooled, name="frozen_backbone_latency")
        _FROZEN_BACKBONES[key] = (inference_ms(branch, {"image": images}, batch_size), int(branch.count_params()))
        logger.info("frozen %s at %d px: %.3f ms per photo (measured once on this worker)", built.spec.name,
                    built.image_size, _FROZEN_BACKBONES[key][0])
    return _FROZEN_BACKBONES[key]
