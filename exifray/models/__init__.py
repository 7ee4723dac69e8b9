"""Keras models: the backbone registry (TF-free), the EXIF MLP, fusion assembly and fine-tuning.

Importing the package registers the built-in backbones (`backbones.py`), as timm's package imports its model
modules: whatever a user registers is added to them, before or after the first lookup.
"""

from exifray.models import backbones  # noqa: F401  (imported to register the built-in backbones)
from exifray.models.registry import (
                                     BackboneSpec,
                                     create_backbone,
                                     get_backbone_spec,
                                     is_backbone,
                                     list_backbones,
                                     register_backbone,
)

__all__ = ["BackboneSpec", "create_backbone", "get_backbone_spec", "is_backbone", "list_backbones",
           "register_backbone"]
