"""Model assembly: image-only, EXIF-only and image+EXIF fusion classifiers (Keras 3 functional API).

    model = build_model(trial_config, num_classes=2, exif_width=62, multi_label=False, image_size=50)

Named inputs `image` (float pixels 0..255, HWC) and `exif` (the encoded EXIF vector). Fusion projects
each branch to `fusion_width`, concatenates, applies one dense layer of `fusion_width`, then the head
(softmax for single-label, sigmoid for multi-label).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import keras
    from keras import KerasTensor

from exifray.config import TrialConfig
from exifray.errors import ConfigError
from exifray.models import backbone_pool
from exifray.models.exif_mlp import exif_layers
from exifray.models.finetune import freeze
from exifray.models.registry import BackboneSpec, create_backbone, get_backbone_spec


class Top:
    """The layers after the backbone's pooling (image dropout, the EXIF MLP, fusion, the output layer), created
    once: applied to the full model's tensors, and again to the head model's inputs, so both share weights."""

    def __init__(self, config: TrialConfig, num_classes: int, multi_label: bool):
        from keras import layers

        self.modality = config.modality
        self.image_dropout = layers.Dropout(config.dropout, name="image_dropout")
        self.exif = exif_layers(config.dropout) if config.uses_exif else []
        self.fusion: list[keras.layers.Layer] = []
        if config.modality == "fusion":
            self.fusion = [layers.Dense(config.fusion_width, activation="relu", name="project_image"),
                           layers.Dense(config.fusion_width, activation="relu", name="project_exif"),
                           layers.Concatenate(name="fuse"),
                           layers.Dense(config.fusion_width, activation="relu", name="fusion_dense"),
                           layers.Dropout(config.dropout, name="fusion_dropout")]
        activation = "sigmoid" if multi_label else "softmax"
        # The output layer stays float32 under a mixed precision policy (numerically stable softmax / sigmoid).
        self.head = layers.Dense(num_classes, activation=activation, name="head", dtype="float32")

    def __call__(self, pooled: KerasTensor | None, exif: KerasTensor | None) -> KerasTensor:
        image = self.image_dropout(pooled) if pooled is not None else None
        for layer in self.exif:
            exif = layer(exif)
        if self.fusion:
            project_image, project_exif, fuse, dense, dropout = self.fusion
            x = dropout(dense(fuse([project_image(image), project_exif(exif)])))
        else:
            x = image if image is not None else exif
        return self.head(x)


class BuiltModel:
    """A trial's model, assembled as far as training has needed it. The layers after the backbone's pooling (`top`)
    exist from the start; the image branch (preprocessing, the backbone with its weights, pooling) is built the
    first time `model` or `backbone` is asked for. A head phase on cached features (`head_model`) never asks, so a
    trial that ASHA stops in its head phase never builds its backbone at all. `top` is created before anything
    else draws from the seeded generators, so its initial weights do not depend on whether or when the backbone
    was built."""

    def __init__(self, config: TrialConfig, top: Top, exif_width: int, spec: BackboneSpec | None,
                 weights: str | None, image_size: int | None):
        self.config, self.top, self.exif_width = config, top, exif_width
        self.spec = spec
        self.weights = weights  # "imagenet", a weights file's path, or None
        self.image_size = image_size
        self._model: keras.Model | None = None
        self._backbone: keras.Model | None = None
        self._pooled: KerasTensor | None = None  # the image branch's pooled backbone features (what the cache holds)
        self._head: keras.Model | None = None
        self._backbone_input: KerasTensor | None = None  # the preprocessed images the backbone is called on
        self._above: dict[str, keras.Model] = {}  # per cut layer's name: the tuning model
        self.backbone_reused = False  # its backbone was lent by the worker's pool (`backbone_pool`), not built

    @property
    def pretrained(self) -> bool:
        """A frozen first phase only makes sense over pretrained weights."""
        return self.weights is not None

    @property
    def model(self) -> keras.Model:
        return self.assemble()

    @property
    def assembled(self) -> bool:
        """Whether the full model (and so the backbone) has been built."""
        return self._model is not None

    @property
    def backbone(self) -> keras.Model | None:
        self.assemble()
        return self._backbone

    @property
    def pooled(self) -> KerasTensor | None:
        self.assemble()
        return self._pooled

    def assemble(self) -> keras.Model:
        """The full model (raw images and the EXIF vector in), built on the first call."""
        import keras

        if self._model is not None:
            return self._model
        inputs, exif_input = [], None
        if self.spec is not None:
            assert self.image_size is not None
            branch = image_branch(self.config, self.image_size, self.spec, self.weights)
            self._backbone_input, self._pooled, self._backbone = branch.preprocessed, branch.pooled, branch.backbone
            self.backbone_reused = branch.reused
            if self.pretrained:  # the first phase trains the head over the frozen backbone
                freeze(self._backbone)
            inputs.append(branch.image_input)
        if self.exif_width:
            exif_input = keras.Input((self.exif_width,), name="exif")
            inputs.append(exif_input)
        name = f"{self.config.modality}_{self.config.backbone if self.spec is not None else 'mlp'}"
        self._model = keras.Model(inputs, self.top(self._pooled, exif_input), name=name)
        return self._model

    def head_model(self, width: int) -> keras.Model:
        """The model from `width` pooled image features (input `features`) and the EXIF vector (input `exif`,
        fusion) to the output: the same layer objects as `model` after the pooling, so training it trains the full
        model's head, and it saves and loads as a model of its own (a head-only checkpoint)."""
        import keras

        assert self.spec is not None, "an EXIF-only model has no image features"
        if self._head is None:
            inputs = {"features": keras.Input((width,), name="features")}
            if self.exif_width:
                inputs["exif"] = keras.Input((self.exif_width,), name="exif")
            name = f"{self.config.modality}_{self.config.backbone}_head"
            self._head = keras.Model(inputs, self.top(inputs["features"], inputs.get("exif")), name=name)
        return self._head

    def feature_extractor(self) -> keras.Model:
        """Images (uint8 pixels, input `image`) to the pooled features, exactly as the full model computes them."""
        import keras

        assert self.spec is not None, "an EXIF-only model has no image features"
        return keras.Model(inputs={"image": self.model.get_layer("image").output}, outputs=self.pooled,
                           name=f"{self.model.name}_features")

    def cut_extractor(self, cut: keras.layers.Layer) -> keras.Model:
        """Images (input `image`) to the output of the backbone's layer `cut` (from `finetune.cut_below_top`),
        through the full model's own preprocessing and frozen layers."""
        import keras

        assert self.backbone is not None and self._backbone_input is not None
        below = keras.Model(self.backbone.inputs, cut.output, name=f"{self.backbone.name}_below")
        return keras.Model(inputs={"image": self.model.get_layer("image").output},
                           outputs=below(self._backbone_input, training=False), name=f"{self.model.name}_cut")

    def tuning_model(self, cut: keras.layers.Layer) -> keras.Model:
        """The model from the output of the backbone's layer `cut` (input `activations`) and the EXIF vector (input
        `exif`, fusion) to the output: the backbone's layers above the cut, the pooling and the head, the same
        layer objects as `model`, so fine-tuning it fine-tunes the full model. Cached per cut."""
        import keras
        from keras import layers

        assert self.backbone is not None
        if cut.name not in self._above:
            above = keras.Model(cut.output, self.backbone.output, name=f"{self.backbone.name}_above")
            inputs = {"activations": keras.Input(tuple(cut.output.shape[1:]), name="activations")}
            if self.exif_width:
                inputs["exif"] = keras.Input((self.exif_width,), name="exif")
            pooled = layers.GlobalAveragePooling2D(name="image_pool")(above(inputs["activations"], training=False))
            self._above[cut.name] = keras.Model(inputs, self.top(pooled, inputs.get("exif")),
                                                name=f"{self.config.modality}_{self.config.backbone}_tuning")
        return self._above[cut.name]


def resolve_weights(weights: str, spec: BackboneSpec) -> str | None:
    """`auto` → imagenet where the backbone has it, else none; a path must exist."""
    choice = weights.strip()
    if choice.lower() == "auto":
        return "imagenet" if "imagenet" in spec.pretrained else None
    if choice.lower() == "none":
        return None
    if choice.lower() == "imagenet":
        if "imagenet" not in spec.pretrained:
            raise ConfigError(f"backbone {spec.name} has no imagenet weights; use weights 'none' or a file")
        return "imagenet"
    if not Path(choice).is_file():
        raise ConfigError(f"weights must be 'imagenet', 'none', 'auto' or an existing file, got {weights!r}")
    return str(Path(choice).resolve())


def weights_identity(weights: str) -> str:
    """`imagenet`, or the sha256 of a local weights file (its path may differ between machines). A warm worker
    hashes a file once, not at every trial, while its path, inode, size and modification time stay the same; as
    git does for its index, a file modified in the last seconds is hashed again (timestamps are coarser than
    writes)."""
    import hashlib

    if weights == "imagenet":
        return weights
    stat = os.stat(weights)
    seen = (os.path.realpath(weights), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if seen in _HASHED:
        return _HASHED[seen]
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    identity = f"sha256:{digest.hexdigest()}"
    if time.time_ns() - stat.st_mtime_ns > 2 * 10**9 and len(_HASHED) < 64:
        _HASHED[seen] = identity
    return identity


_HASHED: dict[tuple[str, int, int, int], str] = {}  # (path, inode, size, mtime) → identity, in this process


def _preprocess(x: KerasTensor, spec: BackboneSpec) -> KerasTensor:
    from keras import layers

    if spec.preprocessing == "tf":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(x)
    if spec.preprocessing == "unit":
        return layers.Rescaling(1 / 255.0, name="preprocess")(x)
    return x


def _augment(x: KerasTensor, seed: int) -> KerasTensor:
    from keras import layers

    x = layers.RandomFlip("horizontal", seed=seed, name="augment_flip")(x)
    x = layers.RandomRotation(0.05, seed=seed, name="augment_rotate")(x)
    return layers.RandomTranslation(0.1, 0.1, seed=seed, name="augment_translate")(x)


def build_backbone(spec: BackboneSpec, image_size: int, weights: str | None) -> tuple[keras.Model, bool]:
    """(backbone, whether a warm worker's pool lent it): a pretrained one comes from the pool where pooling is on
    (`backbone_pool`), put back as built, keyed by what it is built from (the weights by their identity)."""
    import keras

    if weights is None or not backbone_pool.pooling():  # (no key: outside a warm worker nothing hashes the file)
        return _create_backbone(spec, image_size, weights), False
    key = (spec.name, str(image_size), weights_identity(weights), keras.mixed_precision.global_policy().name)
    return backbone_pool.lend(key, lambda: _create_backbone(spec, image_size, weights))


def _create_backbone(spec: BackboneSpec, image_size: int, weights: str | None) -> keras.Model:
    try:
        return create_backbone(spec.name, image_size, weights)
    except (OSError, ValueError) as exc:
        if weights == "imagenet":
            raise ConfigError(f"could not load imagenet weights for {spec.name} (no network? Keras downloads "
                              f"them): {exc}; use --weights none or a local weights file") from exc
        if weights is not None:
            raise ConfigError(f"could not load weights file {weights} into {spec.name}: {exc}") from exc
        raise


class ImageBranch(NamedTuple):
    image_input: KerasTensor
    preprocessed: KerasTensor  # the preprocessed images the backbone is called on
    pooled: KerasTensor  # the pooled backbone features
    backbone: keras.Model
    reused: bool  # the backbone came from the worker's pool (`backbone_pool`)


def image_branch(config: TrialConfig, image_size: int, spec: BackboneSpec, weights: str | None) -> ImageBranch:
    import keras
    from keras import layers

    image_input = keras.Input((image_size, image_size, 3), name="image")
    x = _augment(image_input, config.seed) if config.augment else image_input
    preprocessed = _preprocess(x, spec)
    backbone, reused = build_backbone(spec, image_size, weights)
    # Over pretrained weights BatchNorm runs in inference mode, also once unfrozen (keras-io recipe).
    x = backbone(preprocessed, training=False) if weights is not None else backbone(preprocessed)
    pooled = layers.GlobalAveragePooling2D(name="image_pool")(x)
    return ImageBranch(image_input, preprocessed, pooled, backbone, reused)


def build_model(config: TrialConfig, num_classes: int, exif_width: int, multi_label: bool,
                image_size: int | None) -> BuiltModel:
    """The trial's model, checked and seeded; the image branch is built when first needed (`BuiltModel`)."""
    import keras

    if num_classes < 2 and not multi_label:
        raise ConfigError(f"a single-label classifier needs >= 2 classes, got {num_classes}")
    spec = weights = None
    if config.uses_image:
        if image_size is None:
            raise ConfigError(f"modality {config.modality!r} needs an image_size")
        spec = get_backbone_spec(config.backbone)
        weights = resolve_weights(config.weights, spec)
    if config.uses_exif and exif_width <= 0:
        raise ConfigError("modality uses EXIF but the encoded EXIF vector is empty (exif_tags)")
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    top = Top(config, num_classes, multi_label)  # first: its initial weights draw from the seed alone
    built = BuiltModel(config, top, exif_width if config.uses_exif else 0, spec, weights, image_size)
    if not built.pretrained:
        built.assemble()  # nothing to defer: every phase trains the whole model
    return built
