"""The EXIF tag catalogue: one entry per tag exifray models, with aliases, kind and parser.

Three readers (Flickr getExif JSON, MIRFLICKR txt, JPEG bytes) all resolve names through `lookup`
and values through `TagSpec.parse`, so the same photo gives the same typed values whichever way it
arrived. Values follow exiftool's conventions, which is what Flickr serves: FNumber and
MaxApertureValue as f-numbers, ExposureTime in seconds, ExposureCompensation and BrightnessValue in EV.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from exifray.errors import UnknownNameError

TypedValue = float | int | bool


class TagKind(str, Enum):  # noqa: UP042  (str() of a member must stay "TagKind.X"; StrEnum would change it)
    NUMERIC = "numeric"  # a real number, standard-scaled (log first where it spans decades)
    FLAG = "flag"  # a yes/no fact (Flash fired), encoded as 0/1
    CATEGORICAL = "categorical"  # an EXIF code from a fixed vocabulary, one-hot encoded


_NUMBER_RE: Final = re.compile(r"[-+]?\d+(?:\.\d+)?(?:\s*/\s*[-+]?\d+(?:\.\d+)?)?")
_CODE_IN_PARENS_RE: Final = re.compile(r"\((\d+)\)\s*$")


def parse_number(raw: object) -> float:
    """First number in `raw`, fractions resolved: "1/250" → 0.004, "0.05 sec (1/20)" → 0.05,
    "f/4.2" → 4.2, "35.0 mm" → 35.0, "-1/3 EV" → -0.333. Raises ValueError when there is none."""
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got boolean {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    elif hasattr(raw, "numerator") and hasattr(raw, "denominator"):  # fractions, Pillow IFDRational
        if float(raw.denominator) == 0:
            raise ValueError(f"rational with zero denominator: {raw!r}")
        value = float(raw.numerator) / float(raw.denominator)
    else:
        text = str(raw).strip()
        match = _NUMBER_RE.search(text)
        if match is None:
            raise ValueError(f"no number in {text!r}")
        token = match.group(0).replace(" ", "")
        if "/" in token:
            numerator, denominator = (float(part) for part in token.split("/"))
            if denominator == 0:
                raise ValueError(f"fraction with zero denominator: {text!r}")
            value = numerator / denominator
        else:
            value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {raw!r}")
    return value


def parse_flash_fired(raw: object) -> bool:
    """Whether the flash fired. Real EXIF stores a bit field (bit 0 = fired; 16 = "off, did not
    fire", 9 = "on, fired"), so codes are decoded bitwise and exiftool texts read for their meaning."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) or re.fullmatch(r"\s*\d+\s*", str(raw)):
        return bool(int(float(str(raw).strip())) & 0x1)
    text = str(raw).strip().lower()
    code = _CODE_IN_PARENS_RE.search(text)
    if code:
        return bool(int(code.group(1)) & 0x1)
    if "did not fire" in text or "not fired" in text or text.startswith(("no flash", "off", "no")):
        return False
    if "fired" in text or text in {"on", "yes", "flash"}:
        return True
    raise ValueError(f"unrecognised Flash value {raw!r}")


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass(frozen=True)
class TagSpec:
    name: str
    kind: TagKind
    aliases: tuple[str, ...] = ()
    log_scale: bool = False  # log10 before standard scaling (values span decades)
    vocabulary: Mapping[int, str] = field(default_factory=dict)  # categorical code → exiftool text
    from_jpeg: Callable[[float], float] | None = None  # raw EXIF unit → exiftool unit
    description: str = ""

    def parse(self, raw: object) -> TypedValue:
        """Typed value of one raw reading; raises ValueError (never anything else) when unreadable."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ValueError("empty value")
        if self.kind is TagKind.FLAG:
            return parse_flash_fired(raw)
        if self.kind is TagKind.CATEGORICAL:
            return self._parse_code(raw)
        return parse_number(raw)

    def _parse_code(self, raw: object) -> int:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            code = int(raw)
        elif re.fullmatch(r"\s*\d+\s*", str(raw)):
            code = int(str(raw))
        else:
            text = str(raw).strip()
            by_text = {_normalise(label): key for key, label in self.vocabulary.items()}
            found = by_text.get(_normalise(text))
            if found is None:
                in_parens = _CODE_IN_PARENS_RE.search(text)  # exiftool's "Unknown (5)"
                if in_parens is None:
                    raise ValueError(f"unrecognised {self.name} value {text!r}")
                found = int(in_parens.group(1))
            code = found
        if self.vocabulary and code not in self.vocabulary:
            raise ValueError(f"{self.name} code {code} is not in the EXIF vocabulary")
        return code


def _apex_aperture_to_fnumber(apex: float) -> float:
    return float(2.0 ** (apex / 2.0))


_ORIENTATION = {1: "Horizontal (normal)", 2: "Mirror horizontal", 3: "Rotate 180", 4: "Mirror vertical",
                5: "Mirror horizontal and rotate 270 CW", 6: "Rotate 90 CW",
                7: "Mirror horizontal and rotate 90 CW", 8: "Rotate 270 CW"}
_LOW_HIGH = {0: "Normal", 1: "Low", 2: "High"}
_SHARPNESS = {0: "Normal", 1: "Soft", 2: "Hard"}
_LIGHT_SOURCE = {0: "Unknown", 1: "Daylight", 2: "Fluorescent", 3: "Tungsten (Incandescent)", 4: "Flash",
                 9: "Fine Weather", 10: "Cloudy", 11: "Shade", 12: "Daylight Fluorescent",
                 13: "Day White Fluorescent", 14: "Cool White Fluorescent", 15: "White Fluorescent",
                 16: "Warm White Fluorescent", 17: "Standard Light A", 18: "Standard Light B",
                 19: "Standard Light C", 20: "D55", 21: "D65", 22: "D75", 23: "D50",
                 24: "ISO Studio Tungsten", 255: "Other"}

CATALOGUE: Final[tuple[TagSpec, ...]] = (
    TagSpec("ExposureTime", TagKind.NUMERIC, ("Exposure", "ShutterSpeed"), log_scale=True,
            description="seconds"),
    TagSpec("FNumber", TagKind.NUMERIC, ("Aperture",), description="f-number"),
    TagSpec("FocalLength", TagKind.NUMERIC, (), description="mm"),
    TagSpec("FocalLengthIn35mmFormat", TagKind.NUMERIC, ("FocalLengthIn35mmFilm", "FocalLength35efl"),
            description="mm, 35 mm equivalent"),
    TagSpec("ISO", TagKind.NUMERIC, ("ISOSpeed", "ISOSpeedRatings", "PhotographicSensitivity"),
            log_scale=True, description="sensitivity"),
    TagSpec("BrightnessValue", TagKind.NUMERIC, ("Brightness",), description="EV (APEX)"),
    TagSpec("MaxApertureValue", TagKind.NUMERIC, ("MaximumLensAperture", "MaxAperture"),
            from_jpeg=_apex_aperture_to_fnumber, description="f-number (APEX in raw EXIF)"),
    TagSpec("ExposureCompensation", TagKind.NUMERIC, ("ExposureBiasValue", "ExposureBias"),
            description="EV"),
    TagSpec("Flash", TagKind.FLAG, (), description="fired (bit 0 of the EXIF flash field)"),
    TagSpec("Saturation", TagKind.CATEGORICAL, (), vocabulary=_LOW_HIGH),
    TagSpec("Contrast", TagKind.CATEGORICAL, (), vocabulary=_LOW_HIGH),
    TagSpec("Sharpness", TagKind.CATEGORICAL, (), vocabulary=_SHARPNESS),
    TagSpec("Orientation", TagKind.CATEGORICAL, (), vocabulary=_ORIENTATION),
    TagSpec("LightSource", TagKind.CATEGORICAL, (), vocabulary=_LIGHT_SOURCE),
)

TAG_NAMES: Final[tuple[str, ...]] = tuple(spec.name for spec in CATALOGUE)
_BY_KEY: Final[dict[str, TagSpec]] = {
    _normalise(name): spec for spec in CATALOGUE for name in (spec.name, *spec.aliases)
}


def lookup(name: str) -> TagSpec | None:
    """The catalogue entry for a tag name or alias ("ISO Speed", "ISOSpeedRatings" → ISO), or None."""
    return _BY_KEY.get(_normalise(name))


def get_tag(name: str) -> TagSpec:
    """Like `lookup` but raises UnknownNameError with close matches for names we do not model."""
    spec = lookup(name)
    if spec is None:
        close = difflib.get_close_matches(name, [*TAG_NAMES, *(a for s in CATALOGUE for a in s.aliases)])
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known tags: {', '.join(TAG_NAMES)}"
        raise UnknownNameError(f"unknown EXIF tag {name!r}{hint}")
    return spec


def resolve_tags(names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Canonical tag names, catalogue order, from a comma list, a sequence or None/"all" (every tag)."""
    if names is None or names == "all":
        return TAG_NAMES
    items = [part.strip() for part in names.split(",")] if isinstance(names, str) else list(names)
    items = [item for item in items if item]
    if not items:
        raise UnknownNameError("an EXIF tag list must name at least one tag, got an empty list")
    wanted = {get_tag(item).name for item in items}
    return tuple(name for name in TAG_NAMES if name in wanted)
