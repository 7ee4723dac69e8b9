from __future__ import annotations

import numpy as np
import pytest

from exifray.config import IngestConfig, TrialConfig
from exifray.errors import ConfigError


@pytest.mark.parametrize(("settings", "message"), [
    ({"modality": "audio"}, "modality must be one of"),
    ({"fusion_width": 0}, "fusion_width must be > 0, got 0"),
    ({"learning_rate": -1.0}, "learning_rate must be > 0"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"batch_size": 0}, "batch_size must be > 0"),
    ({"fine_tune_layers": -3}, "fine_tune_layers must be >= 0, got -3"),
    ({"exif_tags": ["ISO", "Shutter"]}, "unknown EXIF tag 'Shutter'"),
    ({"country": "Germany"}, "alpha-3"),
    ({"learning_rte": 0.1}, "did you mean 'learning_rate'"),
    ({"fusion_width": "wide"}, "fusion_width must be int"),
])
def test_trial_config_errors_name_the_setting_and_value(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrialConfig.from_tune(settings)


def test_trial_config_from_tune_coerces_numpy_and_strings() -> None:
    config = TrialConfig.from_tune({"fusion_width": np.int64(32), "learning_rate": "0.01", "augment": "true",
                                    "exif_tags": "ISO,FNumber", "image_size": None})
    assert config.fusion_width == 32 and isinstance(config.fusion_width, int)
    assert config.learning_rate == 0.01 and config.augment is True
    assert config.exif_tags == ("FNumber", "ISO") and config.image_size is None
    assert TrialConfig.from_tune(config.to_dict()) == config


@pytest.mark.parametrize(("settings", "message"), [
    ({"sizes": (50, 50)}, "must not repeat"), ({"sizes": (4,)}, "between 8 and 1024"),
    ({"split_fractions": (0.5, 0.2, 0.2)}, "summing to 1"), ({"label_level": "leaf"}, "labels must be one of"),
    ({"input_format": "zip"}, "format must be one of"),
])
def test_ingest_config_validation(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        IngestConfig(inputs=("x",), out="y", **settings)
