"""One way to turn a photo into model inputs: ingest, `exifray predict`, `organize` and `serve` all call this.

    params = DecodeParams(sizes=(50, 150), draft=150)
    photo = read_photo(data, params)          # Photo(images={50: uint8 HWC, 150: ...}, exif=ExifReading, ...)

Decoding: Pillow opens whatever it reads (JPEG, PNG, WebP, TIFF, BMP, GIF; HEIC/HEIF with `exifray[heic]`);
a JPEG is decoded in draft mode (DCT scaling to the smallest scale that still covers `draft` px, so a 4000 px
photo is decoded at 1/8 when 150 px is all we need), EXIF orientation is applied, the colour mode becomes RGB
(CMYK, greyscale, palette; 16-bit greyscale is scaled to 8 bits, not clipped; transparency is composited on
white) and each size is a bilinear square resize. Every parameter that changes pixels is in `DecodeParams`,
which the dataset card records (`decode`) and a bundle carries, so a user's photo reaches the model exactly as a
dataset photo did. EXIF is read from the same opened image; a photo without EXIF gives an empty reading.

A photo that cannot be used raises `Rejected(reason, detail)`: `empty_file`, `file_too_large`,
`decompression_bomb`, `not_an_image`, `corrupt_image`, `unsupported_mode`.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from exifray.errors import ExifParseError
from exifray.exif.parse import ExifReading, read_image_exif

if TYPE_CHECKING:
    from PIL import Image

RESIZE_FILTERS = ("bilinear",)  # the one filter ingest has used; recorded so a change would be visible
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
# Modes Pillow converts to RGB as they are; 16-bit greyscale is scaled first, alpha composited on white.
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_TO_RGB = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr")


class Rejected(Exception):
    """A photo that cannot be used, with a machine-readable reason and the detail a person needs."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class DecodeParams:
    """Everything that changes the pixels a photo becomes."""

    sizes: tuple[int, ...]
    draft: int | None = None  # JPEG draft target in px; None: max(sizes)
    resize: str = "bilinear"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not self.sizes or any(size < 1 for size in self.sizes):
            raise ValueError(f"sizes must be positive, got {self.sizes!r}")
        if self.resize not in RESIZE_FILTERS:
            raise ValueError(f"resize must be one of {RESIZE_FILTERS}, got {self.resize!r}")
        if self.draft is None:
            object.__setattr__(self, "draft", max(self.sizes))

    @property
    def draft_target(self) -> int:
        return self.draft if self.draft is not None else max(self.sizes)

    def to_dict(self) -> dict[str, object]:
        """What the dataset card and a bundle record (sizes are recorded beside it)."""
        return {"draft": self.draft_target, "resize": self.resize, "orientation": "exif",
                "colour": "RGB; 16-bit scaled to 8; alpha on white", "max_pixels": self.max_pixels}

    @classmethod
    def recorded(cls, sizes: tuple[int, ...], recorded: Mapping[str, Any] | None) -> DecodeParams:
        """The parameters a card or bundle recorded; an older one without them had draft = its largest size."""
        recorded = recorded or {}
        return cls(tuple(sizes), draft=int(recorded.get("draft", max(sizes))),
                   resize=str(recorded.get("resize", "bilinear")),
                   max_pixels=int(recorded.get("max_pixels", DEFAULT_MAX_PIXELS)))


@dataclass
class Photo:
    images: dict[int, np.ndarray]  # size → HWC uint8 RGB
    exif: ExifReading = field(default_factory=ExifReading)
    exif_error: str | None = None  # a broken EXIF block (the photo is still usable without it)
    format: str | None = None
    mode: str | None = None

    @property
    def exif_found(self) -> bool:
        return bool(self.exif.tags)


_HEIF_REGISTERED: list[bool] = []


def _register_optional_formats() -> None:
    """HEIC/HEIF through pillow-heif when `exifray[heic]` is installed (once per process)."""
    if _HEIF_REGISTERED:
        return
    _HEIF_REGISTERED.append(True)
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*", b"BM")


def _looks_like_image(data: bytes) -> bool:
    """The bytes start like an image format (so a failure to open it is a damaged image, not another file)."""
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or data[4:8] == b"ftyp"


def _to_rgb(image: Image.Image) -> Image.Image:
    from PIL import Image

    mode = image.mode
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if mode in _ALPHA or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode not in _TO_RGB:
        raise Rejected("unsupported_mode", f"colour mode {mode!r} is not supported (use RGB, greyscale, palette, "
                                           f"CMYK or 16-bit greyscale)")
    return image.convert("RGB")


def read_photo(data: bytes, params: DecodeParams, *, with_exif: bool = True) -> Photo:
    """Photo bytes → an RGB uint8 array per size and the photo's EXIF; `Rejected` when it cannot be used."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise Rejected("empty_file", "zero-byte image file")
    if len(data) > params.max_bytes:
        raise Rejected("file_too_large", f"{len(data)} bytes > {params.max_bytes}")
    _register_optional_formats()
    exif, exif_error = ExifReading(), None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(io.BytesIO(data))
            except UnidentifiedImageError as exc:
                if _looks_like_image(data):
                    raise Rejected("corrupt_image", f"starts like an image ({data[:8]!r}) but Pillow cannot read it"
                                   ) from exc
                raise Rejected("not_an_image", f"not an image Pillow can read (starts with {data[:8]!r})") from exc
            width, height = image.size
            if width * height > params.max_pixels:
                raise Rejected("decompression_bomb",
                               f"{width}x{height} = {width * height} pixels > {params.max_pixels}")
            source_format, source_mode = image.format, image.mode
            if with_exif:
                try:
                    exif = read_image_exif(image)
                except ExifParseError as exc:
                    exif_error = str(exc)
            if source_format == "JPEG":
                target = params.draft_target  # JPEG DCT scaling: decode at 1/2, 1/4 or 1/8 when enough
                image.draft("RGB", (target, target))
            image.load()
            image = _to_rgb(ImageOps.exif_transpose(image))
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Rejected("decompression_bomb", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Rejected("corrupt_image", f"{type(exc).__name__}: {exc}") from exc
    images = {size: np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
              for size in params.sizes}
    return Photo(images, exif, exif_error, source_format, source_mode)
