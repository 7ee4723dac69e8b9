from __future__ import annotations

import re

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


# Values of the wrong type are errors naming the key and the value, never silently truncated or flipped.
@pytest.mark.parametrize(("key", "value", "expected"), [
    ("batch_size", 16.7, ConfigError("batch_size must be int, got 16.7")),
    ("batch_size", True, ConfigError("batch_size must be int, got True")),
    ("batch_size", "16", 16),
    ("batch_size", 16.0, 16),
    ("batch_size", np.int64(16), 16),
    ("epochs", "ten", ConfigError("epochs must be int, got 'ten'")),
    ("augment", "maybe", ConfigError("augment must be bool, got 'maybe'")),
    ("augment", "yes", True),
    ("augment", 0, False),
    ("augment", 2, ConfigError("augment must be bool, got 2")),
    ("learning_rate", "1e-3", 0.001),
    ("learning_rate", False, ConfigError("learning_rate must be float, got False")),
    ("learning_rate", [0.1], ConfigError("learning_rate must be float, got [0.1]")),
    ("backbone", 5, ConfigError("backbone must be str, got 5")),
    ("image_size", None, None),
    ("image_size", 32.0, 32),
    ("image_size", 32.5, ConfigError("image_size must be int | None, got 32.5")),
    ("threads", "2", 2),
])
def test_settings_are_coerced_or_rejected_by_type(key: str, value: object, expected: object) -> None:
    if isinstance(expected, ConfigError):
        with pytest.raises(ConfigError, match=re.escape(str(expected))):
            TrialConfig.from_tune({key: value})
        return
    result = getattr(TrialConfig.from_tune({key: value}), key)
    assert result == expected and type(result) is type(expected)


def test_crawl_and_client_configs_live_in_config_with_their_checks() -> None:
    from exifray.config import ClientConfig, CrawlConfig

    with pytest.raises(ConfigError, match="per_page must be 1..500, got 0"):
        CrawlConfig(mode="search", target="boat", out="x", per_page=0)
    with pytest.raises(ConfigError, match="concurrency must be >= 1, got 0"):
        ClientConfig(concurrency=0)
    assert CrawlConfig(mode="group", target="g", out="x").client == ClientConfig()


def test_cli_defaults_come_from_the_dataclasses() -> None:
    """One place for a default: the parser shows and uses the dataclass's."""
    from exifray.cli import build_parser
    from exifray.config import ClientConfig, CrawlConfig

    parser = build_parser()
    ingest = parser.parse_args(["ingest", "in", "--out", "o"])
    assert ingest.sizes == IngestConfig.sizes and ingest.shard_size == IngestConfig.shard_size
    crawl = parser.parse_args(["crawl", "group", "g", "--out", "o"])
    assert crawl.per_page == CrawlConfig.per_page and crawl.rate_limit == ClientConfig.rate_limit
    assert crawl.api_url == ClientConfig.api_url and crawl.read_timeout_s == ClientConfig.read_timeout_s
    train = parser.parse_args(["train", "--data", "d", "--out", "o"])
    assert train.epochs is None and train.early_stopping_patience is None  # only given flags override
    assert f"(default: {TrialConfig.epochs})" in _help(parser, "train", "--epochs")


def _help(parser: object, command: str, flag: str) -> str:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return next(a.help for a in sub._actions if flag in a.option_strings) or ""
