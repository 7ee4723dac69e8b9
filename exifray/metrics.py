"""Classification metrics on whole splits (numpy only), so F1 is exact rather than batch-averaged."""

from __future__ import annotations

import numpy as np


def predictions(probabilities: np.ndarray, multi_label: bool, threshold: float = 0.5) -> np.ndarray:
    """0/1 matrix of predicted classes: argmax for single-label, a threshold for multi-label."""
    if multi_label:
        return (probabilities >= threshold).astype(np.int8)
    out = np.zeros_like(probabilities, dtype=np.int8)
    if len(probabilities):
        out[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = 1
    return out


def f1_scores(targets: np.ndarray, probabilities: np.ndarray, multi_label: bool) -> dict[str, float]:
    """Macro F1 (mean over classes that occur in targets or predictions), micro F1 and accuracy
    (exact match for multi-label)."""
    truth = (targets > 0.5).astype(np.int8)
    predicted = predictions(probabilities, multi_label)
    tp = (truth & predicted).sum(axis=0).astype(np.float64)
    fp = ((1 - truth) & predicted).sum(axis=0).astype(np.float64)
    fn = (truth & (1 - predicted)).sum(axis=0).astype(np.float64)
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
    macro = float(per_class[present].mean()) if present.any() else 0.0
    micro_denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / micro_denominator) if micro_denominator else 0.0
    accuracy = float((truth == predicted).all(axis=1).mean()) if len(truth) else 0.0
    return {"f1_macro": macro, "f1_micro": micro, "accuracy": accuracy}


def crossentropy(targets: np.ndarray, probabilities: np.ndarray, multi_label: bool, epsilon: float = 1e-7) -> float:
    """Mean loss as Keras computes it from probabilities (clipped to [epsilon, 1 - epsilon]):
    categorical crossentropy for single-label, binary crossentropy averaged over classes for multi-label."""
    truth = targets.astype(np.float64)
    if multi_label:
        p = np.clip(probabilities.astype(np.float64), epsilon, 1 - epsilon)
        return float(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)).mean())
    p = probabilities.astype(np.float64)
    p = np.clip(p / p.sum(axis=1, keepdims=True), epsilon, 1 - epsilon)
    return float(-(truth * np.log(p)).sum(axis=1).mean())
