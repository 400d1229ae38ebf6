"""Greyscale frames get their own temperature: the head's answers on colour frames stay as
they are, and the temperature fitted on greyscale images makes its confidence there honest."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tasks.training.evaluation import expected_calibration_error
from tasks.training.search import fit_candidate, fit_temperature
from vehicle_model.calibration import GreyscaleTempered, temper
from vehicle_model.featurizer import CHROMA_COLUMN, FEATURE_DIM

pytestmark = pytest.mark.unit


def _rows(n: int, colour: bool, rng: np.random.Generator) -> np.ndarray:
    X = rng.normal(size=(n, FEATURE_DIM))
    X[:, CHROMA_COLUMN] = 0.6 if colour else 0.0
    return X


def test_only_greyscale_rows_are_tempered() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["red", "blue"] * 40)
    X = _rows(80, colour=True, rng=rng)
    X[y == "red", :10] += 2
    head = LogisticRegression().fit(X, y)
    mixed = np.concatenate([X[:5], X[:5]])
    mixed[5:, CHROMA_COLUMN] = 0.0  # the same images, seen by an infrared camera

    proba = GreyscaleTempered(head, temperature=3.0).predict_proba(mixed)

    np.testing.assert_allclose(proba[:5], head.predict_proba(X[:5]))
    np.testing.assert_allclose(proba[5:], temper(head.predict_proba(mixed[5:]), 3.0))
    assert (proba[5:].max(axis=1) < proba[:5].max(axis=1)).all(), "less sure on greyscale"
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert list(GreyscaleTempered(head, 3.0).predict(mixed)) == list(head.predict(mixed)), "tempering keeps the label"


def test_the_fitted_temperature_makes_an_overconfident_head_honest() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, size=2000)
    # Right 40% of the time, 95% sure every time.
    guess = np.where(rng.random(2000) < 0.4, truth, (truth + rng.integers(1, 4, size=2000)) % 4)
    proba = np.full((2000, 4), 0.05 / 3)
    proba[np.arange(2000), guess] = 0.95
    classes = np.array(["a", "b", "c", "d"])

    temperature = fit_temperature(proba, classes, classes[truth])

    assert temperature > 1
    assert expected_calibration_error(proba, truth) > 0.5
    assert expected_calibration_error(temper(proba, temperature), truth) < 0.05


def test_candidates_get_a_greyscale_temperature_per_attribute_when_given_greyscale_images() -> None:
    rng = np.random.default_rng(2)
    y = np.array(["red", "blue", "green"] * 40)
    X = _rows(120, colour=True, rng=rng)
    X[:, :3] += 3 * (y[:, None] == np.array(["red", "blue", "green"]))  # separable in colour
    grey = _rows(60, colour=False, rng=rng)  # the colour is gone: nothing to tell them apart

    fitted = fit_candidate(
        "logistic_regression", X, {"color": y}, budget_seconds=30, greyscale=(grey, {"color": y[:60]})
    )

    head = fitted.heads["color"]
    assert isinstance(head, GreyscaleTempered) and head.temperature == fitted.greyscale_temperatures["color"]
    assert head.predict_proba(grey).max(axis=1).mean() < head.head.predict_proba(grey).max(axis=1).mean()
    untempered = fit_candidate("logistic_regression", X, {"color": y}, budget_seconds=30).heads["color"]
    assert isinstance(untempered, type(head.head)), "no greyscale images, no wrapper"
