"""Synthetic, Flickr-shaped demo data: a CRAWL DIR with rendered photos and realistic EXIF.

    exifray synth data/crawl --scenario indoor_outdoor --photos 2000 --seed 0

This is a stand-in for real Flickr photos, built to have the property the thesis measured: the image
and the EXIF each carry part of the answer, so fusion should beat either alone. How:

- Every sub-concept (kitchen, beach, ...) has a visual prototype (sky/ground colours, stripe texture,
  shapes). Sub-concepts are paired across the two super-concepts (kitchen ↔ urban, bathroom ↔ beach,
  moving boat ↔ static boat) and a pair's prototypes are blended, so from pixels alone a twin pair is
  easy to tell apart from other pairs but hard to tell apart within. `image_signal` sets how far twins
  stay apart and how strong a weak super-concept tint is.
- EXIF is drawn per super-concept from physically plausible, overlapping distributions (indoor: slow
  shutter, high ISO, flash often; outdoor: fast shutter, low ISO, small aperture, bright; moving:
  fast shutter, long lenses; landscape: wide and stopped down). `exif_signal` pulls the class
  distributions towards their pooled mean. EXIF says "indoor or outdoor" but not which sub-concept.
- Tags go missing at real-world rates (ExposureTime/FNumber/FocalLength/ISO/Flash ~100 %, Orientation
  ~69 %, LightSource ~55 %, BrightnessValue ~19 %), `label_noise` of the labels are wrong, and every
  JPEG carries the same EXIF embedded as its `exif/{id}.json` getExif body (with Flickr's quirks:
  numbers sometimes as strings, `raw._content` sometimes a JSON number).
"""

from __future__ import annotations

import io
import logging
import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exifray.config import setting
from exifray.crawl.records import CrawlDir, PhotoRecord, image_filename
from exifray.errors import ConfigError, UnknownNameError
from exifray.fsutil import atomic_write_json

logger = logging.getLogger(__name__)

SCENARIOS: dict[str, dict[str, tuple[str, ...]]] = {
    "indoor_outdoor": {"indoor": ("bathroom", "bedroom", "corridor", "kitchen", "office"),
                       "outdoor": ("beach", "forest", "mountain", "river", "urban")},
    "moving_static": {"moving": ("boat", "car", "motorcycle", "plane"),
                      "static": ("boat", "car", "motorcycle", "plane")},
    "object_landscape": {"object": ("food", "toys", "vehicle", "furniture"),
                         "landscape": ("beach", "forest", "mountain", "skyline")},
}

# Per super-concept EXIF profiles: (mean, sd) of log10 ExposureTime, log10 ISO, FNumber, 35 mm focal
# length and BrightnessValue (EV); probability that the flash fired; LightSource code weights.
_PROFILES: dict[str, dict[str, Any]] = {
    "indoor": dict(exposure=(-1.6, 0.45), iso=(2.7, 0.35), fnumber=(3.2, 1.0), focal35=(28, 12),
                   brightness=(2.0, 1.8), flash=0.45, light={3: 0.4, 2: 0.3, 0: 0.2, 1: 0.1}),
    "outdoor": dict(exposure=(-2.6, 0.5), iso=(2.1, 0.3), fnumber=(7.0, 2.5), focal35=(38, 22),
                    brightness=(8.0, 2.0), flash=0.05, light={1: 0.35, 9: 0.25, 10: 0.2, 0: 0.2}),
    "moving": dict(exposure=(-2.9, 0.4), iso=(2.5, 0.35), fnumber=(5.6, 1.8), focal35=(160, 80),
                   brightness=(7.0, 2.0), flash=0.03, light={1: 0.5, 9: 0.2, 0: 0.3}),
    "static": dict(exposure=(-2.0, 0.5), iso=(2.2, 0.35), fnumber=(8.0, 2.5), focal35=(45, 25),
                   brightness=(6.0, 2.2), flash=0.1, light={1: 0.4, 10: 0.2, 0: 0.4}),
    "object": dict(exposure=(-1.8, 0.5), iso=(2.6, 0.4), fnumber=(3.5, 1.2), focal35=(50, 25),
                   brightness=(4.0, 2.2), flash=0.3, light={3: 0.3, 2: 0.2, 0: 0.3, 1: 0.2}),
    "landscape": dict(exposure=(-2.5, 0.5), iso=(2.0, 0.3), fnumber=(9.0, 2.5), focal35=(22, 10),
                      brightness=(8.5, 1.8), flash=0.02, light={1: 0.4, 9: 0.3, 10: 0.1, 0: 0.2}),
}
# Sub-concept nudges on top of the super profile (brightness in EV, 35 mm focal length in mm).
_SUB_NUDGES: dict[str, dict[str, float]] = {
    "beach": {"brightness": 1.5}, "forest": {"brightness": -1.5}, "mountain": {"focal35": -5},
    "plane": {"focal35": 80}, "corridor": {"brightness": -0.8}, "skyline": {"brightness": -1.0},
}
# Share of photos whose EXIF has each tag (DESIGN.md's real-world rates).
PRESENCE: dict[str, float] = {
    "ExposureTime": 0.99, "FNumber": 0.97, "FocalLength": 0.98, "ISO": 0.96, "Flash": 0.98,
    "Orientation": 0.69, "LightSource": 0.55, "BrightnessValue": 0.19, "FocalLengthIn35mmFormat": 0.6,
    "MaxApertureValue": 0.5, "ExposureCompensation": 0.9, "Saturation": 0.45, "Contrast": 0.45,
    "Sharpness": 0.45,
}
_CAMERAS = (("Canon", "Canon EOS 40D", 1.6), ("NIKON CORPORATION", "NIKON D700", 1.0),
            ("NIKON CORPORATION", "NIKON D70", 1.5), ("SONY", "DSC-RX100", 2.7),
            ("Panasonic", "DMC-FZ30", 4.7), ("Apple", "iPhone 6", 7.1))
_FLASH_TEXT = {0: "No Flash", 1: "Fired", 7: "Fired, Return detected", 9: "On, Fired",
               16: "Off, Did not fire", 24: "Auto, Did not fire", 25: "Auto, Fired"}
_ORIENTATIONS = ((1, 0.8), (6, 0.1), (8, 0.07), (3, 0.03))


@dataclass(frozen=True)
class SynthConfig:
    scenario: str = setting("indoor_outdoor", "which concepts to render: indoor_outdoor | moving_static | "
                                              "object_landscape")
    photos: int = setting(1000, "number of photos")
    seed: int = setting(0, "random seed; same seed, same files")
    image_size: int = setting(160, "rendered photo size in px")
    image_signal: float = setting(0.18, "0..1, how far visual twins across super-concepts stay apart")
    exif_signal: float = setting(0.45, "0..1, how far per-class EXIF distributions sit from the pooled one")
    label_noise: float = setting(0.05, "share of wrong labels")
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise UnknownNameError(f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if self.photos < 1:
            raise ConfigError(f"photos must be >= 1, got {self.photos!r}")
        if not 16 <= self.image_size <= 1024:
            raise ConfigError(f"image_size must be between 16 and 1024, got {self.image_size!r}")
        for name in ("image_signal", "exif_signal", "label_noise"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality!r}")


@dataclass(frozen=True)
class _Prototype:
    top: np.ndarray
    bottom: np.ndarray
    horizon: float
    stripe_angle: float
    stripe_frequency: float
    stripe_colour: np.ndarray
    shape_colour: np.ndarray
    circles: float  # share of shapes that are circles rather than rectangles


def _own_prototype(name: str) -> _Prototype:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return _Prototype(top=rng.uniform(30, 225, 3), bottom=rng.uniform(30, 225, 3), horizon=rng.uniform(0.3, 0.7),
                      stripe_angle=rng.uniform(0, math.pi), stripe_frequency=rng.uniform(2, 9),
                      stripe_colour=rng.uniform(-40, 40, 3), shape_colour=rng.uniform(20, 235, 3),
                      circles=rng.uniform(0, 1))


def _blend(a: _Prototype, b: _Prototype, weight: float) -> _Prototype:
    """`a` moved `weight` of the way towards `b` (angles blended on the circle of period π)."""
    mix = lambda x, y: (1 - weight) * x + weight * y  # noqa: E731  (a one-line formula reads best as a lambda)
    angle_delta = (b.stripe_angle - a.stripe_angle + math.pi / 2) % math.pi - math.pi / 2
    return _Prototype(mix(a.top, b.top), mix(a.bottom, b.bottom), mix(a.horizon, b.horizon),
                      a.stripe_angle + weight * angle_delta, mix(a.stripe_frequency, b.stripe_frequency),
                      mix(a.stripe_colour, b.stripe_colour), mix(a.shape_colour, b.shape_colour),
                      mix(a.circles, b.circles))


def concept_prototypes(scenario: str, image_signal: float) -> dict[tuple[str, str], _Prototype]:
    """Visual prototype per (super, sub); twins across supers are pulled together as signal drops."""
    supers = list(SCENARIOS[scenario])
    first, second = (SCENARIOS[scenario][name] for name in supers)
    weight = 0.5 * (1.0 - image_signal)
    prototypes = {}
    for index, sub in enumerate(first):
        twin = second[index % len(second)]
        own, other = _own_prototype(f"{supers[0]}/{sub}"), _own_prototype(f"{supers[1]}/{twin}")
        if sub == twin:  # the same object moving or static: only the super cue differs
            own = other = _own_prototype(sub)
        prototypes[(supers[0], sub)] = _blend(own, other, weight)
        prototypes[(supers[1], twin)] = _blend(other, own, weight)
    return prototypes


def render_photo(rng: np.random.Generator, prototype: _Prototype, super_index: int, size: int,
                 image_signal: float) -> np.ndarray:
    """One upright RGB photo (uint8, size × size × 3)."""
    grid = np.linspace(0.0, 1.0, size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    horizon = np.clip(prototype.horizon + rng.normal(0, 0.08), 0.1, 0.9)
    jitter = rng.normal(0, 22, 3)
    sky = prototype.top + jitter + (yy[..., None] * 30)
    ground = prototype.bottom + jitter - ((yy[..., None] - horizon) * 25)
    image = np.where((yy < horizon + 0.05 * np.sin(6 * xx + rng.uniform(0, 6)))[..., None], sky, ground)
    angle = prototype.stripe_angle + rng.normal(0, 0.25)
    frequency = prototype.stripe_frequency * rng.uniform(0.8, 1.25)
    wave = np.sin(2 * math.pi * frequency * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 6.3))
    image = image + wave[..., None] * prototype.stripe_colour * rng.uniform(0.5, 1.2)
    for _ in range(rng.poisson(2.0 + 2.0 * super_index * image_signal)):
        centre, radius = rng.uniform(0.1, 0.9, 2), rng.uniform(0.05, 0.2)
        colour = prototype.shape_colour + rng.normal(0, 25, 3)
        if rng.uniform() < prototype.circles:
            mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
        else:
            mask = (np.abs(yy - centre[0]) < radius) & (np.abs(xx - centre[1]) < radius * rng.uniform(0.5, 2))
        image[mask] = colour
    tint = np.array([18.0, 6.0, -14.0]) * (1 if super_index == 0 else -1) * image_signal
    image = image + tint + rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


# --- EXIF --------------------------------------------------------------------------------------

def _profile(scenario: str, super_name: str, sub: str, exif_signal: float) -> dict[str, Any]:
    """The super profile pulled towards the scenario's pooled mean by (1 - exif_signal)."""
    names = list(SCENARIOS[scenario])
    own, pooled = _PROFILES[super_name], [_PROFILES[name] for name in names]
    mixed: dict[str, Any] = {}
    for key, value in own.items():
        if key == "light":
            codes = sorted({code for profile in pooled for code in profile["light"]})
            mean = {c: np.mean([p["light"].get(c, 0.0) for p in pooled]) for c in codes}
            weights = np.array([mean[c] + exif_signal * (value.get(c, 0.0) - mean[c]) for c in codes])
            mixed[key] = (codes, weights / weights.sum())
        elif key == "flash":
            centre = float(np.mean([p["flash"] for p in pooled]))
            mixed[key] = centre + exif_signal * (value - centre)
        else:
            centre = float(np.mean([p[key][0] for p in pooled]))
            mixed[key] = (centre + exif_signal * (value[0] - centre) + _SUB_NUDGES.get(sub, {}).get(key, 0.0),
                          value[1])
    return mixed


def draw_exif(rng: np.random.Generator, profile: dict[str, Any]) -> dict[str, float | int | bool]:
    """Typed catalogue values for one photo, before tags go missing."""
    make_model = _CAMERAS[rng.integers(len(_CAMERAS))]
    crop = make_model[2]
    exposure = 10 ** rng.normal(*profile["exposure"])
    exposure = 1.0 / round(1.0 / exposure) if exposure < 0.5 else round(exposure, 1)
    fnumber = round(float(np.clip(rng.normal(*profile["fnumber"]), 1.4, 22.0)), 1)
    focal35 = float(np.clip(rng.normal(*profile["focal35"]), 14, 600))
    lens_max = min(fnumber, float(rng.choice([1.8, 2.8, 3.5, 4.0])))
    codes, weights = profile["light"]
    fired = bool(rng.uniform() < profile["flash"])
    return {
        "ExposureTime": float(exposure),
        "FNumber": fnumber,
        "FocalLength": round(focal35 / crop, 1),
        "FocalLengthIn35mmFormat": float(round(focal35)),
        "ISO": int(float(np.clip(round(10 ** rng.normal(*profile["iso"]) / 50) * 50, 50, 25600))),
        "BrightnessValue": round(float(rng.normal(*profile["brightness"])), 2),
        "MaxApertureValue": round(lens_max, 1),
        "ExposureCompensation": float(rng.choice([-1, -2 / 3, -1 / 3, 0, 0, 0, 0, 0, 1 / 3, 2 / 3])),
        "Flash": fired,
        "Saturation": int(rng.choice([0, 0, 0, 1, 2])),
        "Contrast": int(rng.choice([0, 0, 0, 1, 2])),
        "Sharpness": int(rng.choice([0, 0, 0, 1, 2])),
        "Orientation": int(rng.choice([o for o, _ in _ORIENTATIONS], p=[p for _, p in _ORIENTATIONS])),
        "LightSource": int(rng.choice(codes, p=weights)),
        "_make": make_model[0], "_model": make_model[1],  # type: ignore[dict-item]  # camera names ride along with the numeric tags
    }


def _fraction_text(seconds: float) -> str:
    return f"1/{round(1 / seconds)}" if seconds < 0.5 else f"{seconds:g}"


def getexif_body(photo_id: str, secret: str, server: str, values: dict[str, Any],
                 rng: np.random.Generator) -> dict[str, Any]:
    """A `flickr.photos.getExif` body shaped like the real one (exiftool texts, mixed number types)."""
    from exifray.exif.tags import get_tag

    def entry(space: str, tag: str, label: str, raw: object, clean: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"tagspace": space, "tagspaceid": 0, "tag": tag, "label": label,
                                "raw": {"_content": raw}}
        if clean is not None:
            item["clean"] = {"_content": clean}
        return item

    as_number_sometimes = lambda v: v if rng.uniform() < 0.6 else f"{v:g}"  # noqa: E731  (a one-line rule, as above)
    exif = [entry("IFD0", "Make", "Make", values["_make"]), entry("IFD0", "Model", "Model", values["_model"])]
    tags = values.keys()
    if "Orientation" in tags:
        orientation = get_tag("Orientation").vocabulary[values["Orientation"]]
        exif.append(entry("IFD0", "Orientation", "Orientation", orientation))
    exif.append(entry("IFD0", "Software", "Software", "exifray synth"))
    if "ExposureTime" in tags:
        t = values["ExposureTime"]
        exif.append(entry("ExifIFD", "ExposureTime", "Exposure", _fraction_text(t) if rng.uniform() < 0.9 else f"{t:g}",
                          f"{t:g} sec ({_fraction_text(t)})"))
    if "FNumber" in tags:
        exif.append(entry("ExifIFD", "FNumber", "Aperture", as_number_sometimes(values["FNumber"]),
                          f"f/{values['FNumber']:g}"))
    exif.append(entry("ExifIFD", "ExposureProgram", "Exposure Program", "Program AE"))
    if "ISO" in tags:
        exif.append(entry("ExifIFD", "ISO", "ISO Speed", str(values["ISO"]) if rng.uniform() < 0.8 else values["ISO"]))
    if "BrightnessValue" in tags:
        brightness = as_number_sometimes(values["BrightnessValue"])
        exif.append(entry("ExifIFD", "BrightnessValue", "Brightness Value", brightness))
    if "ExposureCompensation" in tags:
        ev = values["ExposureCompensation"]
        text = "0" if ev == 0 else f"{'+' if ev > 0 else '-'}{round(abs(ev) * 3)}/3"
        exif.append(entry("ExifIFD", "ExposureCompensation", "Exposure Bias", 0 if ev == 0 else text, f"{text} EV"))
    if "MaxApertureValue" in tags:
        exif.append(entry("ExifIFD", "MaxApertureValue", "Max Aperture Value", values["MaxApertureValue"]))
    exif.append(entry("ExifIFD", "MeteringMode", "Metering Mode", "Multi-segment"))
    if "LightSource" in tags:
        light = get_tag("LightSource").vocabulary[values["LightSource"]]
        exif.append(entry("ExifIFD", "LightSource", "Light Source", light))
    if "Flash" in tags:
        code = int(rng.choice([1, 7, 9, 25])) if values["Flash"] else int(rng.choice([0, 16, 24]))
        values["_flash_code"] = code
        exif.append(entry("ExifIFD", "Flash", "Flash", _FLASH_TEXT[code]))
    if "FocalLength" in tags:
        f = values["FocalLength"]
        exif.append(entry("ExifIFD", "FocalLength", "Focal Length", f"{f:.1f} mm", f"{f:g} mm"))
    if "FocalLengthIn35mmFormat" in tags:
        exif.append(entry("ExifIFD", "FocalLengthIn35mmFormat", "Focal Length (35mm format)",
                          f"{values['FocalLengthIn35mmFormat']:g} mm"))
    for tag in ("Contrast", "Saturation", "Sharpness"):
        if tag in tags:
            exif.append(entry("ExifIFD", tag, tag, get_tag(tag).vocabulary[values[tag]]))
    return {"photo": {"id": photo_id, "secret": secret, "server": server, "farm": 66,
                      "camera": f"{values['_make']} {values['_model']}", "exif": exif}, "stat": "ok"}


def jpeg_exif_bytes(values: dict[str, Any]) -> bytes:
    """The same values as raw EXIF (rationals, APEX aperture, Flash bit field) for embedding."""
    from fractions import Fraction

    from PIL import ExifTags, Image
    from PIL.TiffImagePlugin import IFDRational

    def rational(value: float, limit: int = 10_000) -> IFDRational:
        fraction = Fraction(value).limit_denominator(limit)
        return IFDRational(fraction.numerator, fraction.denominator)

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = values["_make"], values["_model"], "exifray synth"
    if "Orientation" in values:
        exif[0x0112] = values["Orientation"]
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    writers: dict[str, tuple[int, Callable[[float], object]]] = {
        "ExposureTime": (0x829A, lambda v: rational(v, 100_000)), "FNumber": (0x829D, rational),
        "ISO": (0x8827, int), "BrightnessValue": (0x9203, rational), "ExposureCompensation": (0x9204, rational),
        "MaxApertureValue": (0x9205, lambda v: rational(2 * math.log2(v))), "LightSource": (0x9208, int),
        "FocalLength": (0x920A, rational), "FocalLengthIn35mmFormat": (0xA405, int), "Contrast": (0xA408, int),
        "Saturation": (0xA409, int), "Sharpness": (0xA40A, int),
    }
    for tag, (tag_id, convert) in writers.items():
        if tag in values:
            sub[tag_id] = convert(values[tag])
    if "Flash" in values:
        sub[0x9209] = values.get("_flash_code", 1 if values["Flash"] else 16)
    return exif.tobytes()


_STORE_TRANSPOSE = {3: "ROTATE_180", 6: "ROTATE_90", 8: "ROTATE_270"}  # inverse of exif_transpose


def encode_jpeg(pixels: np.ndarray, orientation: int | None, exif_bytes: bytes, quality: int) -> bytes:
    from PIL import Image

    image = Image.fromarray(pixels)
    if orientation in _STORE_TRANSPOSE:  # store the pixels as the camera did; Orientation undoes it
        image = image.transpose(getattr(Image.Transpose, _STORE_TRANSPOSE[orientation]))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif_bytes)
    return buffer.getvalue()


# --- the crawl dir -----------------------------------------------------------------------------

def _size_key(size: int) -> str:
    for limit, key in ((75, "s"), (150, "q"), (240, "m"), (320, "n"), (500, "")):
        if size <= limit:
            return key
    return "z"


def generate(out: str | Path, config: SynthConfig) -> list[PhotoRecord]:
    """Write a complete CRAWL DIR; deterministic for `config` (same bytes for the same seed)."""
    rng = np.random.default_rng(config.seed)
    crawl = CrawlDir(out)
    supers = list(SCENARIOS[config.scenario])
    concepts = [(name, sub) for name in supers for sub in SCENARIOS[config.scenario][name]]
    prototypes = concept_prototypes(config.scenario, config.image_signal)
    assignment = rng.permutation(np.arange(config.photos) % len(concepts))
    ids = 50_000_000_000 + np.sort(rng.choice(10_000_000, size=config.photos, replace=False)).astype(np.int64) * 7
    records: list[PhotoRecord] = []
    for index in range(config.photos):
        super_name, sub = concepts[assignment[index]]
        photo_id, secret = str(ids[index]), f"{rng.integers(16**10):010x}"
        server = str(rng.integers(1000, 65535))
        pixels = render_photo(rng, prototypes[(super_name, sub)], supers.index(super_name), config.image_size,
                              config.image_signal)
        values = draw_exif(rng, _profile(config.scenario, super_name, sub, config.exif_signal))
        for tag, share in PRESENCE.items():
            if rng.uniform() >= share:
                values.pop(tag)
        body = getexif_body(photo_id, secret, server, values, rng)
        orientation = values.get("Orientation")
        jpeg = encode_jpeg(pixels, None if orientation is None else int(orientation), jpeg_exif_bytes(values),
                           config.jpeg_quality)
        labels = [super_name, sub]
        if rng.uniform() < config.label_noise:  # a wrong label, as on real Flickr
            wrong = [c for c in concepts if c != (super_name, sub)]
            labels = list(wrong[rng.integers(len(wrong))])
        filename = image_filename(photo_id, secret, server, _size_key(config.image_size))
        records.append(PhotoRecord(id=photo_id, secret=secret, server=server, labels=labels, source="synth",
                                   image=crawl.write_image(filename, jpeg), exif=crawl.write_exif(photo_id, body),
                                   extra={"true_labels": [super_name, sub]}))
        if (index + 1) % 500 == 0:
            logger.info("synth: %d/%d photos", index + 1, config.photos)
    crawl.write_records(records)
    atomic_write_json(Path(out) / "synth.json", {"generator": "exifray synth", **asdict(config)})
    logger.info("synth: wrote %d photos (%s) to %s", len(records), config.scenario, out)
    return records
