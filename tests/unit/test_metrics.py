from __future__ import annotations

import numpy as np
import pytest

from exifray.metrics import f1_scores


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
