from __future__ import annotations

import pytest

from exifray.errors import ConfigError, UnknownNameError
from exifray.exif.tags import TAG_NAMES, get_tag, lookup, parse_flash_fired, parse_number, resolve_tags


@pytest.mark.parametrize(("raw", "expected"), [
    ("1/250", 0.004), ("0.05 sec (1/20)", 0.05), ("f/4.2", 4.2), (4.2, 4.2), ("4.2", 4.2), ("35.0 mm", 35.0),
    ("-1/3 EV", -1 / 3), ("+2/3", 2 / 3), (0, 0.0), ("58.0 mm (35 mm equivalent: 87.0 mm)", 58.0), ("400", 400.0),
    ("1/8000", 0.000125), ("2.5", 2.5), ("-0.7 EV", -0.7),
])
def test_parse_number_examples(raw: object, expected: float) -> None:
    assert parse_number(raw) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("raw", ["", "inf", "n/a", "1/0", "Unknown", True])
def test_parse_number_rejects_non_numbers(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_number(raw)


@pytest.mark.parametrize(("raw", "fired"), [
    ("Off, Did not fire", False), ("No Flash", False), ("16", False), (16, False), ("Auto, Did not fire", False),
    (24, False), (0, False), ("Fired, Return detected", True), ("9", True), (9, True), ("On, Fired", True),
    ("Auto, Fired", True), ("Fired", True), (1, True), ("Unknown (25)", True), ("On, Did not fire", False),
])
def test_flash_is_decoded_as_a_bit_field(raw: object, fired: bool) -> None:
    assert parse_flash_fired(raw) is fired
    assert get_tag("Flash").parse(raw) is fired


@pytest.mark.parametrize(("tag", "raw", "code"), [
    ("Orientation", "Horizontal (normal)", 1), ("Orientation", "Rotate 90 CW", 6), ("Orientation", "Rotate 270 CW", 8),
    ("Orientation", "Mirror horizontal and rotate 270 CW", 5), ("Orientation", "3", 3), ("Orientation", 8, 8),
    ("Saturation", "Normal", 0), ("Saturation", "Low", 1), ("Saturation", "high", 2), ("Saturation", 2, 2),
    ("Contrast", "Low", 1), ("Contrast", "0", 0), ("Sharpness", "Soft", 1), ("Sharpness", "Hard", 2),
    ("LightSource", "Fine Weather", 9), ("LightSource", "Tungsten (Incandescent)", 3), ("LightSource", "D65", 21),
    ("LightSource", "Unknown", 0), ("LightSource", 255, 255), ("LightSource", "Cloudy", 10),
])
def test_categorical_texts_and_codes_give_codes(tag: str, raw: object, code: int) -> None:
    assert get_tag(tag).parse(raw) == code


@pytest.mark.parametrize(("tag", "raw"), [("Orientation", "9"), ("Orientation", "Sideways"),
                                          ("Saturation", "Very vivid"), ("LightSource", 7)])
def test_categorical_values_outside_the_vocabulary_are_rejected(tag: str, raw: object) -> None:
    with pytest.raises(ValueError):
        get_tag(tag).parse(raw)


@pytest.mark.parametrize(("alias", "canonical"), [
    ("ISOSpeed", "ISO"), ("ISOSpeedRatings", "ISO"), ("ISO Speed", "ISO"),
    ("ExposureBiasValue", "ExposureCompensation"),
    ("ExposureBias", "ExposureCompensation"), ("Exposure Bias", "ExposureCompensation"),
    ("FocalLengthIn35mmFilm", "FocalLengthIn35mmFormat"), ("Aperture", "FNumber"), ("Exposure", "ExposureTime"),
    ("MaximumLensAperture", "MaxApertureValue"), ("Brightness", "BrightnessValue"), ("Focal Length", "FocalLength"),
    ("Light Source", "LightSource"),
])
def test_aliases_resolve_to_the_canonical_tag(alias: str, canonical: str) -> None:
    spec = lookup(alias)
    assert spec is not None and spec.name == canonical


def test_catalogue_has_the_thesis_fourteen_tags() -> None:
    assert set(TAG_NAMES) == {"ExposureTime", "FNumber", "FocalLength", "FocalLengthIn35mmFormat", "ISO",
                              "BrightnessValue", "MaxApertureValue", "ExposureCompensation", "Flash", "Saturation",
                              "Contrast", "Sharpness", "Orientation", "LightSource"}


def test_unknown_tag_error_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="did you mean FNumber"):
        get_tag("Fnumbr")


def test_resolve_tags_keeps_catalogue_order_and_rejects_empty() -> None:
    assert resolve_tags("ISO, FNumber,ExposureTime") == ("ExposureTime", "FNumber", "ISO")
    assert resolve_tags(None) == TAG_NAMES
    with pytest.raises(ConfigError):
        resolve_tags(" , ")
