"""Fine-tuning on cached activations: the frozen layers below a fine-tuning phase's trainable top give the same
activations every epoch, so they are computed once per (backbone, weights, size, cut, ..., dataset), kept in the
FEATURE CACHE beside the pooled features, and the phase trains the layers above the cut on them.

    tune = TuneActivations(access, config, built, inputs, image_size, dataset_id)
    if tune.prepare(phase.unfreeze):           # the backbone built and its top unfrozen
        model, train = tune.model, tune.inputs("train")

The cut is the highest backbone layer below the top `fine_tune_layers` rounded up to a multiple of `CUT_LADDER`
whose output alone feeds everything above it (`finetune.cut_below_top`): for MobileNetV2 and 1-25 fine-tuned
layers the end of block 13, 3x3x160 activations at 96 px; the frozen layers between the cut and the trainable top
run forward every epoch.
The model trained (`BuiltModel.tuning_model`) shares its layers with the full model, so the full model is
fine-tuned by training it; BatchNorm stays in inference mode and the backbone runs with `training=False`
either way, so the two compute the same function. It applies where the pooled-feature cache does (pretrained
weights, no augmentation, `feature_cache` not off) and when the activations of every split fit
`MAX_ACTIVATION_BYTES`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import numpy as np

from exifray import schema
from exifray.feature_cache import (
    BUILT,
    NOT_APPLICABLE,
    BuildCost,
    CacheAccess,
    CacheKey,
    Features,
    cache_key,
    compute_features,
    obtain,
    route,
    with_exif,
)

if TYPE_CHECKING:
    import keras

    from exifray.config import TrialConfig
    from exifray.models.fusion import BuiltModel

# The activations of every split, float32: above this the phase trains through the backbone as before.
MAX_ACTIVATION_BYTES: Final = 1 << 30
# Cuts are taken below the top `fine_tune_layers` rounded up to a multiple of this: fusion.yaml's 1-100 fine-tuned
# layers share 4 entries per backbone and size instead of one per distinct cut.
CUT_LADDER: Final = 25


class TuneActivations:
    """One trial's fine-tuning phase on cached activations: whether it applies, the cut, the activations
    (obtained the first time the phase needs them), and what the trial reports (`fine_tune_cache`, its reason
    and key; a build's cost adds to the trial's `feature_build_s` / `feature_build_kg`)."""

    def __init__(self, access: CacheAccess | None, config: TrialConfig, built: BuiltModel,
                 inputs: dict[str, dict[str, np.ndarray]], image_size: int | None, dataset: str | None):
        self.access = access or CacheAccess()
        self.config, self.built, self.inputs_by_split = config, built, inputs
        self.image_size, self.dataset = image_size, dataset or "unidentified"
        fine_tunes = built.pretrained and config.fine_tune_layers > 0 and config.fine_tune_epochs > 0
        head = route(config, built)
        self.use = fine_tunes and head.use and image_size is not None
        self.outcome = head.outcome if fine_tunes else NOT_APPLICABLE
        self.reason = (head.reason.replace("the head phase", "the fine-tuning phase") if not head.use
                       else "no fine-tuning phase" if not fine_tunes
                       else "the fine-tuning phase trains the backbone's top on its cached activations below it")
        self.cut: keras.layers.Layer | None = None
        self.key: CacheKey | None = None
        self.cost: BuildCost | None = None
        self._activations: Features | None = None

    def prepare(self, unfreeze: int) -> bool:
        """Find the cut below the top `unfreeze` layers (the backbone built); whether the phase trains on cached
        activations."""
        from exifray.models.finetune import backbone_layers, cut_below_top

        if not self.use or self.cut is not None:
            return self.use
        assert self.built.backbone is not None and self.image_size is not None
        layers = len(backbone_layers(self.built.backbone))
        if unfreeze >= layers:
            return self._not_applicable(f"the top {unfreeze} layers are the whole backbone: nothing below them")
        photos = sum(len(self.inputs_by_split[name]["image"]) for name in schema.SPLITS)
        reason = f"no single layer below the top {unfreeze} layers feeds all of them"
        # First the cut below the top layers rounded up to the ladder (neighbouring `fine_tune_layers` share an
        # entry; the frozen layers between it and the trainable top run forward each epoch), then the exact one.
        for depth in dict.fromkeys((min(-(-unfreeze // CUT_LADDER) * CUT_LADDER, layers - 1), unfreeze)):
            cut = cut_below_top(self.built.backbone, depth)
            if cut is None:
                continue
            size = 4 * photos * math.prod(int(n) for n in cut.output.shape[1:])
            if size <= MAX_ACTIVATION_BYTES:
                break
            reason = (f"the activations at {cut.name} would take {size / 2**30:.1f} GiB (more than "
                      f"{MAX_ACTIVATION_BYTES / 2**30:.0f} GiB)")
        else:
            return self._not_applicable(reason)
        self.cut = cut
        self.key = replace(cache_key(self.config, self.built, self.image_size, self.dataset), cut=cut.name)
        return True

    def _not_applicable(self, reason: str) -> bool:
        self.use, self.outcome, self.reason = False, NOT_APPLICABLE, reason
        return False

    def _obtained(self) -> Features:
        if self._activations is None:
            assert self.key is not None and self.cut is not None
            pixels = {name: self.inputs_by_split[name]["image"] for name in schema.SPLITS}
            extractor = self.built.cut_extractor(self.cut)
            self._activations, self.outcome, self.cost = obtain(
                self.access.cache, self.key, lambda: compute_features(extractor, pixels, self.config.country),
                self.access.coordination)
        return self._activations

    @property
    def below_cost(self) -> tuple[float, int] | None:
        """(ms per photo, parameters) of the frozen layers below the cut, measured when the entry was built; None
        when the phase did not train on activations or their entry predates the measurement."""
        activations = self._activations
        if activations is None or math.isnan(activations.backbone_ms):
            return None
        return activations.backbone_ms, activations.backbone_params

    @property
    def model(self) -> keras.Model:
        """The layers above the cut, the pooling and the head (shared with the full model)."""
        assert self.cut is not None, "prepare() first"
        return self.built.tuning_model(self.cut)

    def inputs(self, split: str) -> dict[str, np.ndarray]:
        """The tuning model's inputs for a split: `activations` (and `exif` for fusion)."""
        return with_exif({"activations": self._obtained().split(split)}, self.inputs_by_split[split])

    def metrics(self, head: dict[str, object]) -> dict[str, object]:
        """`head` (the pooled features' outcome and build cost) with this phase's outcome, and its build's cost
        added to the trial's."""
        outcome = self.outcome or "not used (the fine-tuning phase had finished before a resume)"
        metrics = {**head, **self.progress(head), "fine_tune_cache_reason": self.reason,
                   "fine_tune_cache_key": self.key.digest if self.key is not None else ""}
        metrics[schema.FINE_TUNE_CACHE] = outcome
        return metrics

    def progress(self, head: dict[str, object]) -> dict[str, object]:
        """What every epoch's report carries: the head's progress (`HeadFeatures.progress`) with this build's cost
        added once it was built here."""
        progress = {**head, schema.FINE_TUNE_CACHE: self.outcome}
        if self.cost is not None and self.outcome == BUILT:
            for key, value in ((schema.FEATURE_BUILD_S, self.cost.seconds),
                               (schema.FEATURE_BUILD_KG, self.cost.emissions_kg)):
                before = float(head.get(key, math.nan))  # type: ignore[arg-type]
                progress[key] = value + (0.0 if math.isnan(before) else before)
        return progress
