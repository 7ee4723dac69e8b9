from __future__ import annotations

import math

import numpy as np
import pytest

from exifray.errors import ConfigError
from exifray.exif.encode import ExifEncoder

TRAIN = {"ExposureTime": [0.001, 0.01, 0.1, None], "ISO": [100, 1000, None, 10000], "FNumber": [2.0, 4.0, 8.0, None],
         "Flash": [1.0, 0.0, 0.0, None], "Orientation": [1.0, 6.0, None, 1.0]}


def test_numeric_tags_are_log_scaled_and_standardised_on_train_values() -> None:
    encoder = ExifEncoder.fit(TRAIN, ["ExposureTime", "ISO", "FNumber"])
    assert encoder.stats["ExposureTime"]["mean"] == pytest.approx(-2.0)  # log10 of 1e-3, 1e-2, 1e-1
    assert encoder.stats["ISO"]["mean"] == pytest.approx(3.0)
    assert encoder.stats["FNumber"]["mean"] == pytest.approx(14 / 3)  # not log-scaled
    encoded = encoder.transform(TRAIN)
    assert encoded[:, 0].tolist()[:3] == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])


def test_missing_values_are_imputed_with_the_mean_and_flagged() -> None:
    encoder = ExifEncoder.fit(TRAIN, ["ExposureTime", "Flash"])
    encoded = encoder.transform(TRAIN)
    assert encoded[3].tolist() == pytest.approx([0.0, 1.0, 1 / 3, 1.0])  # scaled 0 + flag, flash rate + flag
    assert encoded[0, 1] == 0.0 and encoded[0, 3] == 0.0


def test_fit_uses_only_the_values_it_is_given() -> None:
    train_only = ExifEncoder.fit({"ISO": [100, 100]}, ["ISO"])
    with_test = ExifEncoder.fit({"ISO": [100, 100, 10000]}, ["ISO"])
    assert train_only.stats["ISO"]["mean"] == pytest.approx(2.0)
    assert with_test.stats["ISO"]["mean"] != pytest.approx(2.0)


def test_categoricals_are_one_hot_over_the_fixed_vocabulary() -> None:
    encoder = ExifEncoder.fit(TRAIN, ["Orientation"])
    encoded = encoder.transform(TRAIN)
    assert encoder.width == 9  # codes 1..8 plus the missing flag
    assert encoded[1].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert encoded[2].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert encoder.feature_names()[5] == "Orientation=6"


def test_feature_groups_cover_every_column_once() -> None:
    encoder = ExifEncoder.fit(TRAIN)
    groups = encoder.feature_groups()
    covered = np.concatenate([np.arange(encoder.width)[group] for group in groups.values()])
    assert sorted(covered.tolist()) == list(range(encoder.width))
    assert len(encoder.feature_names()) == encoder.width
    assert groups["Orientation"].stop - groups["Orientation"].start == 9


def test_subset_and_round_trip_keep_statistics() -> None:
    encoder = ExifEncoder.fit(TRAIN)
    restored = ExifEncoder.from_dict(encoder.to_dict())
    assert np.array_equal(restored.transform(TRAIN), encoder.transform(TRAIN))
    subset = encoder.subset(["ISO", "Flash"])
    assert subset.tags == ("ISO", "Flash") and subset.width == 4
    assert subset.stats["ISO"] == encoder.stats["ISO"]


def test_subset_with_unfitted_tag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LightSource"):
        ExifEncoder.fit(TRAIN, ["ISO"]).subset(["LightSource"])


def test_non_positive_values_of_log_tags_count_as_missing() -> None:
    encoder = ExifEncoder.fit({"ISO": [100.0, 1000.0]}, ["ISO"])
    assert encoder.transform({"ISO": [0.0, -5.0]})[:, 1].tolist() == [1.0, 1.0]
