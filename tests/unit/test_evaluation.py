"""The metric maths that evaluation and the promotion gate share, checked against scikit-learn
and the textbook expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from tasks.training.evaluation import ECE_BINS, attribute_metrics, expected_calibration_error, weighted_metric

pytestmark = pytest.mark.unit

CLASSES = np.array(["bus", "car", "truck", "van"])


def _case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.choice(CLASSES[:3], size=n), rng.dirichlet(np.ones(len(CLASSES)) * 0.7, size=n)


def _textbook_ece(proba: np.ndarray, correct: np.ndarray, bins: int) -> float:
    confidence = proba.max(axis=1)
    error = 0.0
    for low, high in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return error


@pytest.mark.parametrize("seed", range(3))
def test_attribute_metrics_agree_with_scikit_learn(seed: int) -> None:
    y, proba = _case(200, seed)
    predicted = CLASSES[proba.argmax(axis=1)]

    metrics = attribute_metrics(CLASSES, proba, y)

    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-12)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(y, predicted, average="macro", labels=np.unique(y), zero_division=0), abs=1e-12
    )
    assert metrics["log_loss"] == pytest.approx(log_loss(y, proba, labels=CLASSES), abs=1e-12)
    assert metrics["ece"] == pytest.approx(_textbook_ece(proba, predicted == y, ECE_BINS), abs=1e-12)


def test_a_label_the_head_never_saw_is_wrong_and_costs_the_log_loss_floor() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])

    metrics = attribute_metrics(np.array(["bus", "car"]), proba, np.array(["bus", "tram"]))

    assert metrics["accuracy"] == 0.5
    assert metrics["log_loss"] == pytest.approx((-np.log(0.9) - np.log(1e-15)) / 2)


def test_expected_calibration_error_reads_true_class_indices() -> None:
    y, proba = _case(150, seed=9)
    index = np.searchsorted(CLASSES, y)

    assert expected_calibration_error(proba, index) == pytest.approx(
        _textbook_ece(proba, proba.argmax(axis=1) == index, ECE_BINS), abs=1e-12
    )


def test_each_weight_row_scores_its_own_resample() -> None:
    y, proba = _case(40, seed=4)
    draws = np.random.default_rng(0).integers(0, 40, size=(3, 40))
    weights = np.stack([np.bincount(draw, minlength=40) for draw in draws]).astype(float)

    values = weighted_metric(CLASSES, proba, y, weights, "log_loss")

    expected = [attribute_metrics(CLASSES, proba[draw], y[draw])["log_loss"] for draw in draws]
    np.testing.assert_allclose(values, expected, atol=1e-12)


def test_an_unknown_metric_names_the_known_ones() -> None:
    y, proba = _case(10, seed=1)
    with pytest.raises(ValueError, match="unknown metric 'recall'; choose from"):
        weighted_metric(CLASSES, proba, y, np.ones((1, 10)), "recall")
