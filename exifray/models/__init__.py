"""Keras models: the backbone registry (TF-free), the EXIF MLP, fusion assembly and fine-tuning."""

from exifray.models.registry import (BackboneSpec, create_backbone, get_backbone_spec, is_backbone, list_backbones,
                                     register_backbone)

__all__ = ["BackboneSpec", "create_backbone", "get_backbone_spec", "is_backbone", "list_backbones",
           "register_backbone"]
