"""A cache entry's arrays: every split through the extractor in batches of one shape (one traced predict function
for the splits and the latency after them), equal to the extractor's own outputs; an empty split stays empty."""

from __future__ import annotations

import numpy as np


def test_every_split_is_computed_in_batches_of_one_shape() -> None:
    import keras

    from exifray.feature_cache import LATENCY_BATCH, compute_features

    batches: list[int] = []

    class Recording(keras.Model):
        def predict_on_batch(self, x):  # type: ignore[no-untyped-def, override]
            batches.append(len(x["image"]))
            return super().predict_on_batch(x)

    image = keras.Input((4,), name="image")
    extractor = Recording({"image": image}, keras.layers.Dense(3)(image))
    rng = np.random.default_rng(0)
    images = {"train": rng.normal(size=(70, 4)).astype(np.float32), "val": np.zeros((0, 4), np.float32),
              "test": rng.normal(size=(40, 4)).astype(np.float32)}
    features, cost = compute_features(extractor, images, "FRA")
    # train 3 batches (the last padded), test 2, then the latency's warm-up and one timed batch: one shape throughout
    assert batches == [LATENCY_BATCH] * 7
    for name in ("train", "test"):
        expected = np.asarray(extractor(images[name]))
        assert features.split(name).shape == (len(images[name]), 3) and features.split(name).dtype == np.float32
        assert np.abs(features.split(name) - expected).max() < 1e-6
    assert features.split("val").shape == (0, 3)
    assert features.backbone_ms > 0 and features.backbone_params == 4 * 3 + 3 and cost.seconds > 0
