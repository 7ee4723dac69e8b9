from __future__ import annotations

import numpy as np
import pytest

from exifray.metrics import f1_scores, macro_f1, macro_f1_difference_interval, outcomes


@pytest.mark.parametrize(("truth", "probabilities", "multi", "macro", "micro", "accuracy"), [
    ([[1, 0], [0, 1], [1, 0], [0, 1]], [[.9, .1], [.2, .8], [.6, .4], [.3, .7]], False, 1.0, 1.0, 1.0),
    ([[1, 0], [1, 0], [1, 0], [0, 1]], [[.9, .1], [.9, .1], [.9, .1], [.9, .1]], False, (6 / 7) / 2, .75, .75),
    ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[.1, .8, .1], [.1, .8, .1], [.1, .1, .8]], False, (0 + 2 / 3 + 1) / 3,
     2 / 3, 2 / 3),
    ([[1, 1], [0, 1]], [[.7, .6], [.2, .4]], True, (1 + 2 / 3) / 2, 0.8, 0.5),
])
def test_f1_scores_table(truth: list, probabilities: list, multi: bool, macro: float, micro: float,
                         accuracy: float) -> None:
    scores = f1_scores(np.array(truth, float), np.array(probabilities), multi)
    assert scores == {"f1_macro": pytest.approx(macro), "f1_micro": pytest.approx(micro),
                      "accuracy": pytest.approx(accuracy)}


@pytest.mark.parametrize("multi", [False, True])
def test_crossentropy_matches_keras_definition(multi: bool) -> None:
    truth = np.array([[1, 0], [0, 1], [1, 1 if multi else 0]], float)
    probabilities = np.array([[0.8, 0.2], [0.4, 0.6], [0.999999999, 1e-12]])
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    if multi:
        expected = -(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)).mean()
    else:
        expected = -(truth * np.log(clipped)).sum(axis=1).mean()
    from exifray.metrics import crossentropy

    assert crossentropy(truth, probabilities, multi) == pytest.approx(expected)


def test_macro_f1_from_outcomes_equals_f1_scores_for_both_label_modes() -> None:
    rng = np.random.default_rng(5)
    single = np.eye(4)[rng.integers(0, 4, 300)]
    multi = (rng.random((300, 4)) > 0.6).astype(float)
    for targets, multi_label in ((single, False), (multi, True)):
        probabilities = rng.random((300, 4))
        counts = outcomes(targets, probabilities, multi_label).sum(axis=1)
        assert float(macro_f1(counts)) == pytest.approx(f1_scores(targets, probabilities, multi_label)["f1_macro"])


def test_the_bootstrap_interval_holds_zero_for_equal_models_and_not_for_a_clearly_better_one() -> None:
    rng = np.random.default_rng(6)
    targets = np.eye(3)[rng.integers(0, 3, 400)]
    guess = rng.random((400, 3))
    good = targets * 0.8 + rng.random((400, 3)) * 0.5
    same = outcomes(targets, guess, False)
    assert macro_f1_difference_interval(same, same) == (0.0, 0.0)
    low, high = macro_f1_difference_interval(same, outcomes(targets, good, False))
    delta = f1_scores(targets, good, False)["f1_macro"] - f1_scores(targets, guess, False)["f1_macro"]
    assert 0 < low < delta < high
    # a small difference on few photos is within noise
    slightly = guess.copy()
    slightly[:2] = targets[:2]
    low, high = macro_f1_difference_interval(outcomes(targets[:60], guess[:60], False),
                                             outcomes(targets[:60], slightly[:60], False))
    assert low <= 0 <= high
