from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from exifray.errors import ConfigError, UnknownNameError
from exifray.models.registry import BackboneSpec, get_backbone_spec, is_backbone, list_backbones, register_backbone


def test_registry_has_the_designed_backbones() -> None:
    names = set(list_backbones())
    assert {f"EfficientNetB{i}" for i in range(8)} | {"MobileNetV2", "ResNet50V2", "ResNet101V2", "ResNet152V2",
                                                      "SmallCNN", "TestTinyCNN", "TestTinyMobileNet"} == names
    assert "TestTinyCNN" not in list_backbones(include_test=False)


def test_names_are_matched_loosely_and_specs_carry_preprocessing() -> None:
    assert is_backbone("efficientnet_b4") and is_backbone("resnet50v2")
    spec = get_backbone_spec("mobilenet-v2")
    assert spec.name == "MobileNetV2" and spec.preprocessing == "tf" and spec.default_image_size == 224
    assert get_backbone_spec("EfficientNetB4").default_image_size == 380


def test_unknown_backbone_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="did you mean EfficientNetB7"):
        get_backbone_spec("EfficientNetB9x")


def test_register_rejects_duplicates_and_unknown_preprocessing() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_backbone(BackboneSpec("MobileNetV2", "x", 32, 8, "tf", builder=lambda **_: None))
    with pytest.raises(ConfigError, match="preprocessing"):
        register_backbone(BackboneSpec("Other", "x", 32, 8, "caffe", builder=lambda **_: None))


def test_registering_before_the_first_lookup_keeps_the_built_ins() -> None:
    """A user's `register_backbone` as the very first registry call of a fresh process (no test order to lean on)."""
    import subprocess
    import sys

    script = (
        "from exifray.models.registry import BackboneSpec, register_backbone, list_backbones, get_backbone_spec\n"
        "register_backbone(BackboneSpec('MyNet', 'custom', 64, 32, 'unit', builder=lambda **_: None))\n"
        "names = list_backbones()\n"
        "assert 'MyNet' in names and 'EfficientNetB0' in names and 'TestTinyCNN' in names, names\n"
        "print(get_backbone_spec('EfficientNetB0').name, len(names))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["EfficientNetB0", str(len(BUILT_INS) + 1)]


BUILT_INS = {f"EfficientNetB{i}" for i in range(8)} | {"MobileNetV2", "ResNet50V2", "ResNet101V2", "ResNet152V2",
                                                       "SmallCNN", "TestTinyCNN", "TestTinyMobileNet"}


def test_a_weights_file_is_hashed_once_until_it_changes(tmp_path: Path) -> None:
    """`weights_identity` is the file's sha256; a warm worker keeps it per (path, inode, size, mtime), except for a
    file written in the last seconds (timestamps are coarser than writes), which is hashed again every time."""
    from exifray.models import fusion

    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"first weights")
    fresh = fusion.weights_identity(str(weights))
    assert fresh == "sha256:" + hashlib.sha256(b"first weights").hexdigest()
    assert fresh not in fusion._HASHED.values()  # just written: not kept
    weights.write_bytes(b"other weights")  # same size, same inode, maybe the same coarse mtime
    assert fusion.weights_identity(str(weights)) == "sha256:" + hashlib.sha256(b"other weights").hexdigest()
    old = time.time() - 60
    os.utime(weights, (old, old))
    kept = fusion.weights_identity(str(weights))
    assert kept == "sha256:" + hashlib.sha256(b"other weights").hexdigest() and kept in fusion._HASHED.values()
    weights.write_bytes(b"third weights")  # a new mtime: a new key
    assert fusion.weights_identity(str(weights)) == "sha256:" + hashlib.sha256(b"third weights").hexdigest()
    assert fusion.weights_identity("imagenet") == "imagenet"
