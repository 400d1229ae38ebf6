"""A remembered head predicts each feature matrix once, and its saved answers serve the vote."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tasks.training.answers import load_answers, remember, save_answers
from tasks.training.vote import choose_vote

pytestmark = pytest.mark.unit


class Counted(LogisticRegression):
    """A logistic regression that counts the rows it was asked to predict."""

    predicted_rows = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        type(self).predicted_rows += len(X)
        return super().predict_proba(X)


def _data(seed: int, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array(["red", "blue", "green"] * (n // 3))
    X = rng.normal(size=(n, 8))
    X[:, :3] += 1.5 * (y[:, None] == np.array(["red", "blue", "green"]))
    return X, y


def test_each_matrix_is_predicted_once_and_only_its_own_rows_are_replayed() -> None:
    X, y = _data(0)
    head = Counted().fit(X, y)
    Counted.predicted_rows = 0
    remembered = remember({"color": head})["color"]

    first = remembered.predict_proba(X)
    again = remembered.predict_proba(X.copy())  # equal bytes, another array
    assert Counted.predicted_rows == len(X)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, head.predict_proba(X))
    assert list(remembered.predict(X)) == list(head.predict(X))

    changed = X.copy()
    changed[5, 2] += 1e-6
    Counted.predicted_rows = 0
    remembered.predict_proba(changed)
    remembered.predict_proba(X[:-1])
    assert Counted.predicted_rows == 2 * len(X) - 1  # neither was taken for X

    first[0] = -1.0  # a caller scribbling on an answer does not change the next one
    assert remembered.predict_proba(X)[0, 0] >= 0


def test_saved_answers_let_the_vote_choose_without_predicting_its_members(tmp_path) -> None:
    X, y = _data(1, n=150)
    X_val, y_val = _data(2, n=60)
    heads = {name: {"color": Counted(C=c).fit(X, y)} for name, c in (("a", 0.01), ("b", 1.0), ("c", 100.0))}
    expected = choose_vote(heads, X_val, {"color": y_val}, seed=3)
    for name, attribute_heads in heads.items():
        scored = remember(attribute_heads)
        scored["color"].predict_proba(X_val)
        save_answers(scored, tmp_path / f"{name}.joblib")

    Counted.predicted_rows = 0
    members = {name: remember(h, load_answers(tmp_path / f"{name}.joblib")) for name, h in heads.items()}
    vote = choose_vote(members, X_val, {"color": y_val}, seed=3)

    assert Counted.predicted_rows == 0
    assert vote.members == expected.members
    np.testing.assert_array_equal(vote.validation["color"].proba, expected.validation["color"].proba)
    assert load_answers(tmp_path / "missing.joblib") == {}
