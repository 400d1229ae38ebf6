"""Over-exposed frames get a head of their own: every other frame is answered exactly as the
head answers it, and candidates fit the expert when given over-exposed training images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tasks.training.search import fit_candidate
from tasks.training.train_steps import _flat_params
from vehicle_model.calibration import GreyscaleTempered
from vehicle_model.exposure import OverExposureRouted
from vehicle_model.featurizer import CHROMA_COLUMN, CLIPPED_COLUMN, FEATURE_DIM, OVER_EXPOSED_CLIPPED

pytestmark = pytest.mark.unit

COLOURS = np.array(["orange", "yellow", "silver"])


def _rows(y: np.ndarray, clipped: float, rng: np.random.Generator) -> np.ndarray:
    """Colour frames whose first columns tell the colour; ``clipped`` is their clipped share."""
    X = rng.normal(size=(len(y), FEATURE_DIM))
    X[:, :3] += 3 * (y[:, None] == COLOURS)
    X[:, CHROMA_COLUMN] = 0.6
    X[:, CLIPPED_COLUMN] = clipped
    return X


def test_only_over_exposed_rows_go_to_the_expert() -> None:
    rng = np.random.default_rng(0)
    y = np.tile(COLOURS, 30)
    X = _rows(y, clipped=0.0, rng=rng)
    head = LogisticRegression().fit(X, y)
    expert = LogisticRegression().fit(X, np.roll(y, 1))  # answers differently, so routing shows
    mixed = np.concatenate([X[:6], X[:6]])
    mixed[6:, CLIPPED_COLUMN] = OVER_EXPOSED_CLIPPED + 0.3

    routed = OverExposureRouted(head, expert)
    proba = routed.predict_proba(mixed)

    np.testing.assert_allclose(proba[:6], head.predict_proba(X[:6]))
    np.testing.assert_allclose(proba[6:], expert.predict_proba(mixed[6:]))
    assert list(routed.classes_) == list(head.classes_)
    assert list(routed.predict(mixed[6:])) == list(expert.predict(mixed[6:]))


def test_the_experts_columns_follow_the_heads_classes_and_a_class_it_never_saw_gets_zero() -> None:
    rng = np.random.default_rng(1)
    y = np.tile(COLOURS, 30)
    X = _rows(y, clipped=0.5, rng=rng)
    head = LogisticRegression().fit(X, y)  # classes orange, silver, yellow
    known = y != "silver"
    expert = LogisticRegression().fit(X[known], y[known])  # orange, yellow only

    proba = OverExposureRouted(head, expert).predict_proba(X)

    silver = list(head.classes_).index("silver")
    assert (proba[:, silver] == 0).all()
    expected = expert.predict_proba(X)
    for j, label in enumerate(expert.classes_):
        np.testing.assert_allclose(proba[:, list(head.classes_).index(label)], expected[:, j])


def test_candidates_fit_an_expert_per_attribute_when_given_over_exposed_images() -> None:
    rng = np.random.default_rng(2)
    y = np.tile(COLOURS, 40)
    X = _rows(y, clipped=0.0, rng=rng)
    # Over-exposed, orange and yellow look alike except in a column the clean frames never use.
    over_y = np.tile(COLOURS, 20)
    over = _rows(over_y, clipped=0.6, rng=rng)
    over[:, :3] = rng.normal(size=(len(over_y), 3))
    over[:, 3] += 3 * (over_y == "orange")
    grey = _rows(y[:30], clipped=0.0, rng=rng)
    grey[:, CHROMA_COLUMN] = 0.0

    fitted = fit_candidate(
        "logistic_regression",
        X,
        {"color": y},
        budget_seconds=30,
        over_exposed=(over, {"color": over_y}),
        greyscale=(grey, {"color": y[:30]}),
    )

    head = fitted.heads["color"]
    assert isinstance(head, GreyscaleTempered) and isinstance(head.head, OverExposureRouted)
    routed = head.head
    assert (routed.predict(over) == over_y).mean() > (routed.head.predict(over) == over_y).mean() + 0.2
    np.testing.assert_allclose(routed.predict_proba(X), routed.head.predict_proba(X))
    params = _flat_params(fitted, 30, 0, augmented_rows=0, over_exposed_rows=len(over))
    assert params["over_exposed_rows"] == str(len(over)) and "color.clf__C" in params, (
        "parameters read through both wrappers"
    )
    plain = fit_candidate("logistic_regression", X, {"color": y}, budget_seconds=30).heads["color"]
    assert not isinstance(plain, OverExposureRouted), "no over-exposed images, no expert"
