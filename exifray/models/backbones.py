"""Built-in backbones: Keras applications plus small CNNs (a from-scratch baseline and tiny test nets).

Every builder returns a Keras model without top layers; pooling happens in the image branch.
Tiny `Test*` backbones live in the real registry (as timm's `test_*` models do) so tests and
`--smoke-test` run the same code path in seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exifray.models.registry import BackboneSpec, Builder, register_backbone

if TYPE_CHECKING:
    import keras


def _keras_application(constructor: str, **kwargs: float) -> Builder:
    def build(image_size: int, weights: str | None) -> keras.Model:
        import keras

        factory = getattr(keras.applications, constructor)
        return factory(include_top=False, weights=weights, input_shape=(image_size, image_size, 3), **kwargs)

    return build


def _conv_stack(widths: tuple[int, ...], name: str) -> Builder:
    def build(image_size: int, weights: str | None) -> keras.Model:
        import keras
        from keras import layers

        inputs = keras.Input((image_size, image_size, 3))
        x = inputs
        for index, width in enumerate(widths):
            x = layers.Conv2D(width, 3, strides=2 if index < 3 else 1, padding="same", use_bias=False,
                              name=f"conv{index}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)  # few steps per epoch
            x = layers.ReLU(name=f"relu{index}")(x)
        model = keras.Model(inputs, x, name=name)
        if weights is not None:
            model.load_weights(weights)
        return model

    return build


_EFFICIENTNET = {"B0": (224, 1280), "B1": (240, 1280), "B2": (260, 1408), "B3": (300, 1536),
                 "B4": (380, 1792), "B5": (456, 2048), "B6": (528, 2304), "B7": (600, 2560)}
for _variant, (_size, _features) in _EFFICIENTNET.items():
    register_backbone(BackboneSpec(
        f"EfficientNet{_variant}", "efficientnet", _size, _features, "none",
        _keras_application(f"EfficientNet{_variant}"), pretrained=("imagenet",),
        description=f"keras.applications.EfficientNet{_variant}"))

register_backbone(BackboneSpec("MobileNetV2", "mobilenet", 224, 1280, "tf", _keras_application("MobileNetV2"),
                               pretrained=("imagenet",), description="keras.applications.MobileNetV2 (alpha 1.0)"))
for _depth, _features in (("50", 2048), ("101", 2048), ("152", 2048)):
    register_backbone(BackboneSpec(f"ResNet{_depth}V2", "resnet_v2", 224, _features, "tf",
                                   _keras_application(f"ResNet{_depth}V2"), pretrained=("imagenet",),
                                   description=f"keras.applications.ResNet{_depth}V2"))

register_backbone(BackboneSpec("SmallCNN", "cnn", 64, 256, "unit", _conv_stack((32, 64, 128, 256), "small_cnn"),
                               min_image_size=16, description="4-block CNN baseline trained from scratch"))
register_backbone(BackboneSpec("TestTinyCNN", "cnn", 32, 16, "unit", _conv_stack((8, 16, 16), "test_tiny_cnn"),
                               min_image_size=8, test_only=True, description="3-block CNN, ~4k params, for tests"))
register_backbone(BackboneSpec("TestTinyMobileNet", "mobilenet", 32, 1280, "tf",
                               _keras_application("MobileNetV2", alpha=0.35), min_image_size=32, test_only=True,
                               description="keras MobileNetV2 alpha 0.35, random init, for tests"))
