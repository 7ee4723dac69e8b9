"""The backbone registry: a closed vocabulary over a private table (timm's register/list/create).

TensorFlow-free: specs are plain data plus a builder imported lazily, so names validate in
milliseconds and `exifray backbones` lists them without loading Keras. As in timm, the package
(`exifray/models/__init__.py`) imports the modules that register the built-ins; this module never imports
them back, so a `register_backbone` of one's own adds to the built-ins whenever it runs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from exifray.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    import keras


class Builder(Protocol):
    """Builds a backbone: a Keras model mapping preprocessed (size, size, 3) images to a feature map."""

    def __call__(self, *, image_size: int, weights: str | None) -> keras.Model: ...


# How pixels in [0, 255] must be scaled before the backbone (Keras applications' preprocess_input).
PREPROCESSING = {
    "none": "raw 0..255 (the model rescales inside, as Keras EfficientNet does)",
    "tf": "x / 127.5 - 1 (MobileNetV2, ResNetV2)",
    "unit": "x / 255 (small CNNs trained from scratch)",
}


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    default_image_size: int
    feature_dim: int
    preprocessing: str
    builder: Builder = field(repr=False, compare=False)
    pretrained: tuple[str, ...] = ()
    min_image_size: int = 32
    test_only: bool = False
    description: str = ""

    def as_row(self) -> dict[str, str | int | bool]:
        return {"name": self.name, "family": self.family, "default_image_size": self.default_image_size,
                "min_image_size": self.min_image_size, "feature_dim": self.feature_dim,
                "preprocessing": self.preprocessing, "pretrained": ",".join(self.pretrained) or "-",
                "test_only": self.test_only, "description": self.description}


_REGISTRY: dict[str, BackboneSpec] = {}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.preprocessing not in PREPROCESSING:
        raise ConfigError(f"preprocessing must be one of {sorted(PREPROCESSING)}, got {spec.preprocessing!r}")
    if _key(spec.name) in _REGISTRY:
        raise ConfigError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[_key(spec.name)] = spec
    return spec


def list_backbones(include_test: bool = True) -> list[str]:
    return [spec.name for spec in _REGISTRY.values() if include_test or not spec.test_only]


def is_backbone(name: str) -> bool:
    return _key(name) in _REGISTRY


def get_backbone_spec(name: str) -> BackboneSpec:
    spec = _REGISTRY.get(_key(name))
    if spec is None:
        names = list_backbones()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"registered: {', '.join(names)}"
        raise UnknownNameError(f"unknown backbone {name!r}; {hint}")
    return spec


def create_backbone(name: str, image_size: int, weights: str | None = None) -> keras.Model:
    """A Keras model mapping preprocessed (size, size, 3) images to a feature map."""
    spec = get_backbone_spec(name)
    if image_size < spec.min_image_size:
        raise ConfigError(f"image_size must be >= {spec.min_image_size} for {spec.name}, got {image_size}")
    return spec.builder(image_size=image_size, weights=weights)
