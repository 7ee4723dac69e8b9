"""What a finished trial hands back (`TrialResult`): its final metrics, epoch history, model, settings and
CodeCarbon files. `train.run_trial` returns it, `experiment.save_trial` writes it as the trial's final folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np


@dataclass
class TrialResult:
    metrics: dict[str, object]
    history: list[dict[str, object]]
    model: keras.Model = field(repr=False)  # the full model, or the head alone when `backbone` is set
    settings: dict[str, object]
    emissions_files: dict[str, bytes] = field(default_factory=dict, repr=False)  # CodeCarbon's CSV files
    backbone: dict[str, object] | None = None  # a head-only trial's frozen backbone (`models.assembly`)
    # the test split scored by the kept weights: photo_ids, targets, probabilities (empty without a test split)
    test_predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
