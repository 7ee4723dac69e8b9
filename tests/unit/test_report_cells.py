"""How the report prints a value: grams, a few digits, cut at separators, empty columns hidden (hand-made frames)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from exifray.report import _cell, _displayed, _text
from exifray.report_charts import category_order


def test_kg_columns_are_shown_in_grams_and_empty_columns_are_left_out() -> None:
    frame = pd.DataFrame({"emissions_kg": [1.5e-5, 2e-4], "fine_tune_layers": [math.nan, math.nan],
                          "exif_tags": ["", ""], "val_f1_macro": [0.91170912, 0.5], "modality": ["fusion", "image"]})
    shown = _displayed(frame)
    assert list(shown.columns) == ["emissions_g", "val_f1_macro", "modality"]
    assert shown["emissions_g"].tolist() == pytest.approx([0.015, 0.2])
    assert frame.columns.tolist()[0] == "emissions_kg"  # the caller's frame is untouched


def test_values_are_printed_to_a_readable_precision() -> None:
    assert _text("val_f1_macro", 0.911709) == "0.912"
    assert _text("delta_test_f1_macro", 0.0004) == "+0.000"
    assert _text("delta_low", -0.0213) == "-0.021"
    assert _text("emissions_g", 0.0494122) == "0.0494"
    assert _text("f1_per_gram_co2", 108.594) == "109"
    assert _text("train_time_s", 12.345) == "12.3"
    assert _text("learning_rate", 0.000500131) == "0.0005"
    assert _text("params", 74778) == "74778" and _text("pareto", True) == "True"


def test_a_long_value_is_cut_at_a_separator_or_a_word_never_inside_one() -> None:
    tags = "ExposureTime+FNumber+ISO+Flash+FocalLength"
    assert _cell("exif_tags", tags, 28) == f'<td title="{tags}">ExposureTime+FNumber (+3 more)</td>'
    error = "ValueError: the backbone could not be built from weights"
    cell = _cell("error", error, 28)
    shown = cell.split(">", 1)[1].removesuffix("</td>")
    assert shown == "ValueError: the backbone …" and error.startswith(shown.removesuffix(" …"))
    assert _cell("exif_tags", "ExposureTime+ExposureCompensation", 28) == (
        "<td>ExposureTime+<wbr>ExposureCompensation</td>")  # two tags: both whole
    assert _cell("status", "complete", 28) == "<td>complete</td>" and _cell("x", math.nan, 28) == "<td></td>"


def test_categories_sort_as_numbers_then_text() -> None:
    assert sorted(["128", "32", "64", "none"], key=category_order) == ["32", "64", "128", "none"]
