"""`read_photo`: every colour mode and orientation a user's folder holds becomes the same upright RGB picture,
with the photo's EXIF; bad input is a `Rejected` naming the problem."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exifray.data.photo import DecodeParams, Rejected, read_photo
from exifray.testing.photos import is_upright, write_mode_photos

pytestmark = pytest.mark.unit
PARAMS = DecodeParams((32, 48))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_mode_photos(tmp_path_factory.mktemp("photos"))


def test_every_mode_and_orientation_decodes_upright_rgb(photos: dict[str, Path]) -> None:
    modes = {}
    for name, path in photos.items():
        photo = read_photo(path.read_bytes(), PARAMS)
        modes[name] = photo.mode
        for size, image in photo.images.items():
            assert image.shape == (size, size, 3) and image.dtype == np.uint8, name
        assert is_upright(photo.images[48]), f"{name} ({photo.mode}) is not upright"
    assert {modes["cmyk.jpg"], modes["grey.png"], modes["palette.png"], modes["rgba.png"]} == {"CMYK", "L", "P",
                                                                                                "RGBA"}
    assert modes["grey16.png"] in ("I;16", "I")


def test_sixteen_bit_greyscale_is_scaled_not_clipped(photos: dict[str, Path]) -> None:
    grey16 = read_photo(photos["grey16.png"].read_bytes(), PARAMS).images[32]
    grey8 = read_photo(photos["grey.png"].read_bytes(), PARAMS).images[32]
    assert np.abs(grey16.astype(int) - grey8.astype(int)).max() <= 1  # clipping would make it all 255


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    buffer = io.BytesIO()
    clear.save(buffer, format="PNG")
    assert (read_photo(buffer.getvalue(), DecodeParams((8,))).images[8] == 255).all()


def test_exif_is_read_from_the_photo_and_missing_is_empty(photos: dict[str, Path], fixtures: Path) -> None:
    tagged = read_photo(photos["orientation_6.jpg"].read_bytes(), PARAMS)
    assert tagged.exif_found and tagged.exif.tags["FNumber"] == 2.8 and tagged.exif.tags["ISO"] == 200
    assert not read_photo(photos["no_exif.jpg"].read_bytes(), PARAMS).exif_found
    assert not read_photo(photos["grey.png"].read_bytes(), PARAMS).exif_found
    camera = read_photo((fixtures / "jpeg" / "Canon_40D.jpg").read_bytes(), PARAMS)
    assert camera.exif.tags["ISO"] == 100 and camera.exif_error is None


def test_heic_reads_with_the_extra(tmp_path: Path) -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    from exifray.testing.photos import upright

    buffer = io.BytesIO()
    Image.fromarray(upright()).save(buffer, format="HEIF", quality=95)
    photo = read_photo(buffer.getvalue(), PARAMS)
    assert photo.format == "HEIF" and is_upright(photo.images[48])


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (b"<html>503 Service Unavailable</html>", "not_an_image"),
    (None, "corrupt_image"),
    (b"huge", "file_too_large"),
])
def test_bad_input_is_rejected_with_its_reason(data: bytes | None, reason: str, photos: dict[str, Path]) -> None:
    params = PARAMS
    if data is None:
        data = photos["no_exif.jpg"].read_bytes()[:400]  # a torn download
    if data == b"huge":
        data, params = photos["no_exif.jpg"].read_bytes(), DecodeParams((32,), max_bytes=100)
    with pytest.raises(Rejected) as caught:
        read_photo(data, params)
    assert caught.value.reason == reason and caught.value.detail


def test_bombs_and_unsupported_modes_are_rejected(photos: dict[str, Path]) -> None:
    with pytest.raises(Rejected, match="decompression_bomb"):
        read_photo(photos["no_exif.jpg"].read_bytes(), DecodeParams((32,), max_pixels=1000))
    buffer = io.BytesIO()
    Image.fromarray(np.ones((8, 8), dtype=np.float32)).save(buffer, format="TIFF")
    with pytest.raises(Rejected, match="unsupported_mode.*'F'"):
        read_photo(buffer.getvalue(), PARAMS)


def test_decode_params_round_trip_through_what_a_card_records() -> None:
    params = DecodeParams((50, 150), max_pixels=1234)
    again = DecodeParams.recorded((50, 150), params.to_dict())
    assert again == params and again.draft_target == 150
    assert DecodeParams.recorded((64,), None).draft_target == 64  # an older card: draft = its largest size
