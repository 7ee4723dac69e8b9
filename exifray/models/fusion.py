"""Model assembly: image-only, EXIF-only and image+EXIF fusion classifiers (Keras 3 functional API).

    model = build_model(trial_config, num_classes=2, exif_width=62, multi_label=False, image_size=50)

Named inputs `image` (float pixels 0..255, HWC) and `exif` (the encoded EXIF vector). Fusion projects
each branch to `fusion_width`, concatenates, applies one dense layer of `fusion_width`, then the head
(softmax for single-label, sigmoid for multi-label).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    from keras import KerasTensor

from exifray.config import TrialConfig
from exifray.errors import ConfigError
from exifray.models.exif_mlp import exif_branch
from exifray.models.registry import BackboneSpec, create_backbone, get_backbone_spec


@dataclass
class BuiltModel:
    model: keras.Model
    backbone: keras.Model | None
    spec: BackboneSpec | None
    pretrained: bool  # a frozen first phase only makes sense over pretrained weights
    pooled: KerasTensor | None = None  # the image branch's pooled backbone features (what the feature cache holds)
    weights: str | None = None  # "imagenet", a weights file's path, or None

    def head_model(self) -> keras.Model:
        """The model from the pooled image features (input `features`) and the EXIF vector (input `exif`, fusion)
        to the output: the same layer objects as `model`, so training it trains the full model's head."""
        import keras

        assert self.pooled is not None, "an EXIF-only model has no image features"
        inputs = {"features": self.pooled}
        if any(layer.name == "exif" for layer in self.model.layers):
            inputs["exif"] = self.model.get_layer("exif").output
        with warnings.catch_warnings():  # Keras asks dict keys to equal tensor names; ours name the head's inputs
            warnings.filterwarnings("ignore", message="When providing `inputs` as a dict", category=UserWarning)
            return keras.Model(inputs=inputs, outputs=self.model.output, name=f"{self.model.name}_head")

    def feature_extractor(self) -> keras.Model:
        """Images (uint8 pixels, input `image`) to the pooled features, exactly as the full model computes them."""
        import keras

        assert self.pooled is not None, "an EXIF-only model has no image features"
        return keras.Model(inputs={"image": self.model.get_layer("image").output}, outputs=self.pooled,
                           name=f"{self.model.name}_features")


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


def build_backbone(spec: BackboneSpec, image_size: int, weights: str | None) -> keras.Model:
    try:
        return create_backbone(spec.name, image_size, weights)
    except (OSError, ValueError) as exc:
        if weights == "imagenet":
            raise ConfigError(f"could not load imagenet weights for {spec.name} (no network? Keras downloads "
                              f"them): {exc}; use --weights none or a local weights file") from exc
        if weights is not None:
            raise ConfigError(f"could not load weights file {weights} into {spec.name}: {exc}") from exc
        raise


def image_branch(config: TrialConfig, image_size: int
                 ) -> tuple[KerasTensor, KerasTensor, KerasTensor, keras.Model, BackboneSpec, str | None]:
    """(image input, pooled features, features after dropout, backbone, spec, resolved weights)."""
    import keras
    from keras import layers

    spec = get_backbone_spec(config.backbone)
    weights = resolve_weights(config.weights, spec)
    image_input = keras.Input((image_size, image_size, 3), name="image")
    x = _augment(image_input, config.seed) if config.augment else image_input
    x = _preprocess(x, spec)
    backbone = build_backbone(spec, image_size, weights)
    # Over pretrained weights BatchNorm runs in inference mode, also once unfrozen (keras-io recipe).
    x = backbone(x, training=False) if weights is not None else backbone(x)
    pooled = layers.GlobalAveragePooling2D(name="image_pool")(x)
    x = layers.Dropout(config.dropout, name="image_dropout")(pooled)
    return image_input, pooled, x, backbone, spec, weights


def build_model(config: TrialConfig, num_classes: int, exif_width: int, multi_label: bool,
                image_size: int | None) -> BuiltModel:
    import keras
    from keras import layers

    if num_classes < 2 and not multi_label:
        raise ConfigError(f"a single-label classifier needs >= 2 classes, got {num_classes}")
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    inputs, features = [], []
    backbone = spec = pooled = weights = None
    if config.uses_image:
        if image_size is None:
            raise ConfigError(f"modality {config.modality!r} needs an image_size")
        image_input, pooled, image_features, backbone, spec, weights = image_branch(config, image_size)
        inputs.append(image_input)
        features.append(image_features)
    if config.uses_exif:
        if exif_width <= 0:
            raise ConfigError("modality uses EXIF but the encoded EXIF vector is empty (exif_tags)")
        exif_input = keras.Input((exif_width,), name="exif")
        inputs.append(exif_input)
        features.append(exif_branch(exif_input, config.dropout))
    if config.modality == "fusion":
        projected = [layers.Dense(config.fusion_width, activation="relu", name=f"project_{name}")(f)
                     for name, f in zip(("image", "exif"), features, strict=True)]
        x = layers.Concatenate(name="fuse")(projected)
        x = layers.Dense(config.fusion_width, activation="relu", name="fusion_dense")(x)
        x = layers.Dropout(config.dropout, name="fusion_dropout")(x)
    else:
        x = features[0]
    activation = "sigmoid" if multi_label else "softmax"
    # The output layer stays float32 under a mixed precision policy (numerically stable softmax / sigmoid).
    outputs = layers.Dense(num_classes, activation=activation, name="head", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=f"{config.modality}_{config.backbone if config.uses_image else 'mlp'}")
    return BuiltModel(model, backbone, spec, weights is not None, pooled, weights)
