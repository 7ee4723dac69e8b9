from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from exifray.cli import main
from exifray.errors import ExifParseError
from exifray.exif.parse import read_exif_file, read_flickr_exif, read_jpeg_exif, read_mirflickr_exif

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_flickr_getexif_fixture_gives_typed_values() -> None:
    reading = read_flickr_exif((FIXTURES / "flickr" / "getExif.toba-8459503474.json").read_bytes())
    assert reading.tags == {
        "ExposureTime": pytest.approx(0.1), "FNumber": 5.6, "ISO": 400.0, "ExposureCompensation": 0.0,
        "MaxApertureValue": 1.4, "LightSource": 9, "Flash": False, "FocalLength": 58.0,
        "FocalLengthIn35mmFormat": 58.0, "Contrast": 0, "Saturation": 0, "Sharpness": 0,
    }
    assert reading.unparsed == {}


def test_flickr_raw_content_may_be_number_or_string() -> None:
    body = {"photo": {"exif": [{"tag": "FNumber", "raw": {"_content": 2.8}},
                               {"tag": "ISO", "raw": {"_content": "1600"}},
                               {"tag": "ExposureTime", "raw": {"_content": 0.5}}]}, "stat": "ok"}
    assert read_flickr_exif(body).tags == {"FNumber": 2.8, "ISO": 1600.0, "ExposureTime": 0.5}


def test_flickr_unparseable_value_is_missing_and_counted_not_raised() -> None:
    body = {"photo": {"exif": [{"tag": "ExposureTime", "raw": {"_content": "n/a"}},
                               {"tag": "FNumber", "raw": {"_content": "f/8"}},
                               {"tag": "Orientation", "raw": {"_content": "Sideways"}}]}, "stat": "ok"}
    reading = read_flickr_exif(body)
    assert reading.tags == {"FNumber": 8.0}
    assert set(reading.unparsed) == {"ExposureTime", "Orientation"}


@pytest.mark.parametrize(("body", "message"), [
    ((FIXTURES / "flickr" / "fail.flickrex.json").read_bytes(), "stat=fail"),
    (b'{"photo": {"exif": [', "broken JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"stat": "ok", "photos": {}}', "no photo.exif"),
])
def test_flickr_bad_bodies_raise_a_named_error(body: bytes, message: str) -> None:
    with pytest.raises(ExifParseError, match=message):
        read_flickr_exif(body)


def test_mirflickr_txt_alternating_lines() -> None:
    text = ("-Make\nCanon\n-Model\nCanon EOS 400D DIGITAL\n-Exposure\n0.005 sec (1/200)\n-Aperture\nf/8.0\n"
            "-Focal Length\n18 mm\n-ISO Speed\n100\n-Flash\nOff, Did not fire\n-Exposure Bias\n-2/3 EV\n"
            "-Orientation\nRotate 90 CW\n-Light Source\nDaylight\n-Max Aperture Value\n3.5\n")
    reading = read_mirflickr_exif(text)
    assert reading.tags == {"ExposureTime": 0.005, "FNumber": 8.0, "FocalLength": 18.0, "ISO": 100.0,
                            "Flash": False, "ExposureCompensation": pytest.approx(-2 / 3), "Orientation": 6,
                            "LightSource": 1, "MaxApertureValue": 3.5}


def _manifest_rows() -> list[dict[str, str]]:
    with (FIXTURES / "jpeg" / "MANIFEST.csv").open() as handle:
        return [row for row in csv.DictReader(handle) if row["decodes"] == "yes"]


# MANIFEST column → (our tag, conversion of the manifest's Pillow value to our typed value)
_MANIFEST_TAGS = {"ExposureTime": ("ExposureTime", float), "FNumber": ("FNumber", float),
                  "ISOSpeedRatings": ("ISO", float), "FocalLength": ("FocalLength", float),
                  "Flash": ("Flash", lambda v: bool(int(v) & 1)),
                  "FocalLengthIn35mmFilm": ("FocalLengthIn35mmFormat", float),
                  "ExposureBiasValue": ("ExposureCompensation", float)}


@pytest.mark.parametrize("row", _manifest_rows(), ids=lambda row: row["fixture"])
def test_jpeg_reader_matches_the_manifest(row: dict[str, str]) -> None:
    reading = read_jpeg_exif(FIXTURES / row["fixture"])
    checked = 0
    for column, (tag, convert) in _MANIFEST_TAGS.items():
        if row[column] == "":
            continue
        expected = convert(row[column])
        assert reading.tags[tag] == pytest.approx(expected, rel=1e-4), tag
        checked += 1
    if row["has_5_core"] == "yes":
        assert checked >= 5


def test_jpeg_max_aperture_is_converted_from_apex() -> None:
    # Konica Minolta Z3 stores MaxApertureValue as APEX 3.0, which is f/2.83 (exiftool prints 2.8)
    tags = read_jpeg_exif(FIXTURES / "jpeg" / "Konica_Minolta_DiMAGE_Z3.jpg").tags
    assert tags["MaxApertureValue"] == pytest.approx(2.828, rel=1e-3)


# What survives of each broken EXIF block (the readable IFD0 Orientation of one, nothing of the others).
@pytest.mark.parametrize(("name", "expected"), [("image00971.jpg", {"Orientation": 1}), ("image01551.jpg", {}),
                                                ("image02206.jpg", {})])
def test_jpeg_broken_exif_blocks_do_not_raise_or_hang(name: str, expected: dict[str, int]) -> None:
    reading = read_jpeg_exif(FIXTURES / "jpeg" / "invalid" / name)
    assert reading.tags == expected


def test_jpeg_without_exif_sub_ifd_gives_only_ifd0_tags() -> None:
    assert read_jpeg_exif(FIXTURES / "jpeg" / "xmp_no_exif.jpg").tags == {"Orientation": 1}


@pytest.mark.parametrize("data", [b"", b"GIF89a....", b"<html>503</html>",
                                  b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00"])
def test_read_exif_file_rejects_unreadable_content(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    with pytest.raises(ExifParseError):
        read_exif_file(path)


def test_exif_command_prints_one_line_per_file_and_flags_errors(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"photo": ')
    code = main(["exif", str(FIXTURES / "jpeg" / "Nikon_D70.jpg"), str(broken),
                 str(FIXTURES / "flickr" / "getExif.toba-8459503474.json"), str(tmp_path / "missing.jpg")])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [line["error"] is None for line in lines] == [True, False, True, False]
    assert lines[0]["tags"]["FNumber"] == 9.0 and lines[0]["tags"]["ExposureCompensation"] == -1.0
    assert "broken JSON" in lines[1]["error"] and lines[3]["error"] == "no such file"
    assert err.count("\n") == 1 and "2 of 4 files" in err


def test_exif_command_walks_folders(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exif", str(FIXTURES / "jpeg" / "invalid")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
