"""Trials that stream their pixels from the shards (`data: {stream: always, budget_mb: ...}`) against the same
trials reading them from memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exifray.data.dataset import load_arrays
from exifray.data.stream import ShardImages
from exifray.space_file import parse_sweep
from exifray.sweep import run_sweep

pytestmark = pytest.mark.integration


def test_streamed_batches_cover_every_training_photo_once_per_epoch_aligned_with_labels(small_dataset: Path) -> None:
    from exifray.train import array_batches

    memory = load_arrays(small_dataset, 32)
    streamed = load_arrays(small_dataset, 32, stream_buffer_shards=1)
    assert isinstance(streamed.train.images, ShardImages) and len(streamed.train.images.shards) == 3
    for split in ("train", "val", "test"):  # everything but the pixels is loaded as before, in the same order
        ours, theirs = getattr(streamed, split), getattr(memory, split)
        assert list(ours.photo_ids) == list(theirs.photo_ids)
        np.testing.assert_array_equal(ours.targets, theirs.targets)
        np.testing.assert_array_equal(ours.pixels[:], theirs.images)
    n = len(memory.train)
    batches = array_batches({"image": streamed.train.pixels, "row": np.arange(n)}, streamed.train.targets, 16,
                            shuffle=True, seed=5, start_epoch=0)
    orders = []
    for _epoch in range(3):  # as Keras drives a PyDataset: every index in turn, then on_epoch_end
        rows: list[int] = []
        for index in range(len(batches)):
            x, y = batches[index]
            np.testing.assert_array_equal(x["image"], memory.train.images[x["row"]])  # pixels match their row
            np.testing.assert_array_equal(y, memory.train.targets[x["row"]])  # and so do the labels
            rows += x["row"].tolist()
        assert sorted(rows) == list(range(n))  # every training photo exactly once
        orders.append(rows)
        batches.on_epoch_end()
    assert orders[0] != orders[1] != orders[2]
    resumed = array_batches({"row": np.arange(n), "image": streamed.train.pixels}, None, 16, shuffle=True, seed=5,
                            start_epoch=2)
    assert [row for i in range(len(resumed)) for row in resumed[i][0]["row"].tolist()] == orders[2]


def _plan(name: str, data: dict[str, object]):
    return parse_sweep({
        "name": name, "seed": 1, "max_concurrent": 1, "scheduler": "none", "resources": {"cpus": 1}, "data": data,
        # A batch larger than the train split: each epoch's gradient is the same whatever order the rows come
        # in (no dropout), so streamed and in-memory trials must agree (a missing, repeated or misaligned photo
        # would not).
        "fixed": {"backbone": "TestTinyCNN", "epochs": 3, "batch_size": 512, "image_size": 32, "dropout": 0.0,
                  "exif_tags": ["ExposureTime", "FNumber", "ISO"], "fusion_width": 8},
        "params": {"modality": {"grid": ["image", "fusion"]}},
    })


def test_a_streaming_sweep_matches_the_in_memory_sweep(small_dataset: Path, tmp_path: Path) -> None:
    boards = {}
    for name, data in (("memory", {"stream": "never"}), ("streamed", {"stream": "always", "budget_mb": 0.01})):
        result = run_sweep(_plan(name, data), small_dataset, storage_path=str(tmp_path))
        boards[name] = result.leaderboard.set_index("modality")
    memory, streamed = boards["memory"], boards["streamed"]
    assert set(memory["status"]) == set(streamed["status"]) == {"complete"} and len(streamed) == 2
    assert set(memory["data_source"]) == {"memory"}
    assert set(streamed["data_source"]) == {"streamed from 3 shards, buffers of 1"}
    for modality in ("image", "fusion"):
        assert streamed.loc[modality, "val_f1_macro"] == pytest.approx(memory.loc[modality, "val_f1_macro"],
                                                                       abs=0.01)
        assert streamed.loc[modality, "epochs"] == memory.loc[modality, "epochs"] == 3
    assert isinstance(streamed, pd.DataFrame)


def test_a_streamed_trial_reads_each_shard_once_per_epoch(ray_local: None, tmp_path: Path) -> None:
    """Keras trains on the batches in the order array_batches shuffled them, buffer after buffer: `model.fit`'s own
    batch shuffle (its default) would jump between buffers and re-read most shards for every batch."""
    from exifray.config import TrialConfig
    from exifray.testing.datasets import make_dataset
    from exifray.train import run_trial

    data = load_arrays(make_dataset(tmp_path, photos=200, sizes=(32,), shard_size=20), 32, stream_buffer_shards=1)
    images = data.train.images
    assert isinstance(images, ShardImages) and len(images.shards) == 10 and images.capacity == 2
    config = TrialConfig(modality="image", backbone="TestTinyCNN", image_size=32, epochs=3, batch_size=8,
                         early_stopping_patience=10)
    run_trial(config, data)
    # each epoch reads every shard once, plus the shards of the two batches Keras reads first to learn their shapes
    # (98 reads with Keras' batch shuffle)
    assert 3 * 10 <= images.reads <= 3 * 10 + 3
