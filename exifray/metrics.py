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


def outcomes(targets: np.ndarray, probabilities: np.ndarray, multi_label: bool) -> np.ndarray:
    """Per photo and class, whether it is a true positive, a false positive or a false negative: (3, n, classes)
    0/1. Summed over photos they give F1's counts; a bootstrap resamples photos and sums again."""
    truth = (targets > 0.5).astype(np.int8)
    predicted = predictions(probabilities, multi_label)
    return np.stack([truth & predicted, (1 - truth) & predicted, truth & (1 - predicted)])


def macro_f1(counts: np.ndarray) -> np.ndarray:
    """Macro F1 from summed (tp, fp, fn) counts of shape (3, ..., classes): the mean over classes that occur in
    targets or predictions (0 where none does)."""
    tp, fp, fn = (counts[i].astype(np.float64) for i in range(3))
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
    occurring = present.sum(axis=-1)
    return np.divide(per_class.sum(axis=-1), occurring, out=np.zeros(occurring.shape), where=occurring > 0)


def macro_f1_difference_interval(a: np.ndarray, b: np.ndarray, resamples: int = 1000, level: float = 0.95,
                                 seed: int = 0) -> tuple[float, float]:
    """A paired bootstrap over test photos of macro F1(b) − macro F1(a), from both models' `outcomes` on the same
    photos in the same order: the (low, high) percentile interval at `level`."""
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    picks = rng.integers(0, n, size=(resamples, n))
    weights = np.stack([np.bincount(row, minlength=n) for row in picks]).astype(np.float64)  # (resamples, n)
    differences = (macro_f1(np.einsum("rn,knc->krc", weights, b.astype(np.float64)))
                   - macro_f1(np.einsum("rn,knc->krc", weights, a.astype(np.float64))))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


def f1_scores(targets: np.ndarray, probabilities: np.ndarray, multi_label: bool) -> dict[str, float]:
    """Macro F1 (mean over classes that occur in targets or predictions), micro F1 and accuracy
    (exact match for multi-label)."""
    truth = (targets > 0.5).astype(np.int8)
    predicted = predictions(probabilities, multi_label)
    counts = outcomes(targets, probabilities, multi_label).sum(axis=1)
    tp, fp, fn = (counts[i].astype(np.float64) for i in range(3))
    macro = float(macro_f1(counts))
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
