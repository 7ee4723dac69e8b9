"""A head-only trial's model: its head and its backbone's identity, and the full model assembled from them.

    assemble_model("experiments/fusion/<trial>/checkpoint_000012")   # the full keras.Model (images + EXIF in)

A trial whose last phase trained the head on cached backbone features never builds its backbone, and its final
folder does not hold one: it holds the head (`head.keras`: pooled features and the EXIF vector in) and
`backbone.json`, the frozen backbone's identity (name, weights, the weights file's sha256, image size). Whoever
reads the folder as a model (`bundle.load_model`: evaluate, predict, serve, organize; `export-best`, which
writes the assembled `model.keras` into the bundle) assembles it here: the backbone built with the recorded
weights, checked against their sha256, the head's weights loaded into the same layers a trial trains. The
assembled model's probabilities equal the trial's own on cached features (within float32 rounding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

from exifray import schema
from exifray.errors import DataError, InputNotFoundError

if TYPE_CHECKING:
    import keras

    from exifray.models.fusion import BuiltModel

BACKBONE_FORMAT: Final = "exifray-frozen-backbone"


def backbone_identity(built: BuiltModel) -> dict[str, object]:
    """What `backbone.json` records of a head-only trial's frozen backbone: enough to build it again and to
    know it is the same."""
    import keras

    from exifray.models.fusion import weights_identity

    assert built.spec is not None and built.weights is not None, "only a pretrained image branch is frozen"
    return {"format": BACKBONE_FORMAT, "backbone": built.spec.name, "weights": built.weights,
            "weights_id": weights_identity(built.weights), "image_size": built.image_size,
            "preprocessing": built.spec.preprocessing, "keras_version": keras.__version__}


def is_head_only(folder: str | Path) -> bool:
    return all((Path(folder) / name).is_file() for name in schema.HEAD_ONLY_FILES)


def assemble_model(folder: str | Path) -> keras.Model:
    """The full model of a head-only trial folder (`settings.json`, `head.keras`, `backbone.json`). Fails with
    the file's path when the backbone's weights file is gone or is no longer the one the trial used."""
    import keras

    from exifray.config import TrialConfig
    from exifray.exif.encode import ExifEncoder
    from exifray.models.fusion import build_model, weights_identity

    folder = Path(folder)
    settings = json.loads((folder / schema.SETTINGS_FILE).read_text(encoding="utf-8"))
    identity = json.loads((folder / schema.BACKBONE_FILE).read_text(encoding="utf-8"))
    weights = str(identity["weights"])
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise InputNotFoundError(
                f"{folder} holds a head-only trial (its backbone was frozen, so only the head was saved): its full "
                f"model needs the backbone's weights file {weights}, which is gone; put the file back there (sha256 "
                f"{identity['weights_id'].removeprefix('sha256:')}) or export the bundle where it still exists")
        found = weights_identity(weights)
        if found != identity["weights_id"]:
            raise DataError(f"{folder} holds a head-only trial trained over the backbone weights {weights} with "
                            f"{identity['weights_id']}, but that file is now {found}: the assembled model would "
                            f"not be the one the trial trained")
    known = {name for name in TrialConfig.__dataclass_fields__}
    config = TrialConfig.from_tune({key: value for key, value in settings.items() if key in known} |
                                   {"weights": weights, "threads": None})
    exif_width = ExifEncoder.from_dict(settings["exif_encoder"]).width if config.uses_exif else 0
    policy = keras.mixed_precision.global_policy()
    try:  # build_model sets the trial's dtype policy (and seeds) process-wide: a reader's process keeps its own
        built = build_model(config, len(settings["classes"]), exif_width, settings["label_mode"] == "multi",
                            identity["image_size"])
        head = keras.models.load_model(folder / schema.HEAD_MODEL_FILE, compile=False)
        width = int(head.get_layer("features").output.shape[-1])
        built.head_model(width).set_weights(head.get_weights())
        return built.model
    finally:
        keras.mixed_precision.set_global_policy(policy)
