"""The vote averages its members' probabilities, ships in a pickle, and is chosen on validation."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tasks.training.evaluation import evaluate_heads
from tasks.training.vote import choose_vote
from vehicle_model.calibration import GreyscaleTempered
from vehicle_model.featurizer import CHROMA_COLUMN, FEATURE_DIM
from vehicle_model.vote import VoteHead

pytestmark = pytest.mark.unit


class Answers:
    """A head whose answer for row i of ``X`` is row ``X[i, 0]`` of a fixed table."""

    def __init__(self, classes: list[str], table: np.ndarray) -> None:
        self.classes_ = np.array(classes, dtype=object)
        self.table = table

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.table[X[:, 0].astype(int)].copy()


def test_the_vote_is_the_mean_of_its_members_over_one_class_order() -> None:
    rows = np.arange(2)[:, None]
    sorted_member = Answers(["blue", "green", "red"], np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]))
    reversed_member = Answers(["red", "green", "blue"], np.array([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]]))
    without_green = Answers(["red", "blue"], np.array([[0.9, 0.1], [0.4, 0.6]]))

    vote = VoteHead([sorted_member, reversed_member, without_green], ["a", "b", "c"])

    assert list(vote.classes_) == ["blue", "green", "red"]
    expected = np.array(
        [
            [(0.2 + 0.8 + 0.1) / 3, (0.3 + 0.1 + 0.0) / 3, (0.5 + 0.1 + 0.9) / 3],
            [(0.6 + 0.1 + 0.6) / 3, (0.3 + 0.2 + 0.0) / 3, (0.1 + 0.7 + 0.4) / 3],
        ]
    )
    np.testing.assert_allclose(vote.predict_proba(rows), expected)
    np.testing.assert_allclose(vote.predict_proba(rows).sum(axis=1), 1.0)
    assert list(vote.predict(rows)) == ["red", "blue"]


def test_a_vote_of_wrapped_heads_round_trips_through_joblib() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["red", "blue", "green"] * 20)
    X = rng.normal(size=(60, FEATURE_DIM))
    X[:, :3] += 2 * (y[:, None] == np.array(["red", "blue", "green"]))
    X[:, CHROMA_COLUMN] = 0.6
    X[:10, CHROMA_COLUMN] = 0.0  # greyscale rows: the tempered member answers them its own way
    plain = LogisticRegression(C=0.1).fit(X, y)
    tempered = GreyscaleTempered(LogisticRegression(C=1.0).fit(X, y), temperature=3.0)
    vote = VoteHead([plain, tempered], ["logistic_regression", "linear_svm"])

    buffer = io.BytesIO()
    joblib.dump({"color": vote}, buffer)
    restored = joblib.load(io.BytesIO(buffer.getvalue()))["color"]

    assert type(restored).__module__ == "vehicle_model.vote" and restored.names == vote.names
    np.testing.assert_array_equal(restored.predict_proba(X), vote.predict_proba(X))
    np.testing.assert_allclose(vote.predict_proba(X), (plain.predict_proba(X) + tempered.predict_proba(X)) / 2)


def _binary(y: np.ndarray, p_true: np.ndarray) -> Answers:
    """A head giving the true label of each row ``p_true`` and the other label the rest."""
    table = np.where((y == "a")[:, None], np.c_[p_true, 1 - p_true], np.c_[1 - p_true, p_true])
    return Answers(["a", "b"], table)


def _validation(n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return np.arange(n)[:, None], rng.choice(["a", "b"], size=n), rng.permutation(n) % 3


def test_the_vote_takes_the_k_that_scores_best_and_its_validation_answers_earn_the_score() -> None:
    X, y, third = _validation()
    # Each of three candidates is wrong, and sure of it, on its own third of the rows: any two
    # disagree on two thirds, and all three outvote the one that is wrong on every row.
    # A fourth is always wrong: adding it to the three breaks the majority.
    candidates = {name: {"t": _binary(y, np.where(third == i, 0.05, 0.9))} for i, name in enumerate("xyz")}
    candidates["wrong"] = {"t": _binary(y, np.zeros(len(y)))}

    vote = choose_vote(candidates, X, {"t": y})

    assert sorted(vote.members["t"]) == ["x", "y", "z"] and vote.members_line().startswith("t=")
    assert evaluate_heads(vote.heads, X, {"t": y}, "val")["val.macro_f1"] == 1.0
    best_single = max(evaluate_heads(c, X, {"t": y}, "val")["val.macro_f1"] for c in candidates.values())
    assert best_single < 0.7
    assert evaluate_heads(vote.validation, X, {"t": y}, "val")["val.macro_f1"] == 1.0


def test_a_vote_that_cannot_beat_the_best_candidate_scores_below_it() -> None:
    X, y, third = _validation()
    # One candidate is right everywhere; the others are wrong, and sure of it, on one same third
    # of the rows, where they outvote the best one or pull it to the wrong side.
    candidates = {"best": {"t": _binary(y, np.full(len(y), 0.9))}}
    candidates |= {name: {"t": _binary(y, np.where(third == 0, 0.0, 0.9))} for name in "xy"}

    vote = choose_vote(candidates, X, {"t": y})

    assert vote.members["t"][0] == "best" and len(vote.members["t"]) >= 2
    honest = evaluate_heads(vote.validation, X, {"t": y}, "val")["val.macro_f1"]
    assert honest < evaluate_heads(candidates["best"], X, {"t": y}, "val")["val.macro_f1"] == 1.0


def test_each_rows_validation_answer_comes_from_a_vote_chosen_without_it() -> None:
    X, y = np.arange(2)[:, None], np.array(["a", "a"])
    # A is right on row 0 only, B on row 1 only, C on both. On one row alone the vote takes C
    # and the one right there, which is wrong on the other row; on both rows it takes all three.
    candidates = {
        name: {"t": _binary(y, np.array(p))} for name, p in {"A": [0.9, 0.1], "B": [0.1, 0.9], "C": [0.6, 0.6]}.items()
    }

    vote = choose_vote(candidates, X, {"t": y}, folds=2)

    assert sorted(vote.members["t"]) == ["A", "B", "C"]
    assert evaluate_heads(vote.heads, X, {"t": y}, "val")["val.accuracy"] == 1.0, "in sample, a perfect score"
    np.testing.assert_allclose(vote.validation["t"].predict_proba(X)[:, 0], [0.35, 0.35])
    assert evaluate_heads(vote.validation, X, {"t": y}, "val")["val.accuracy"] == 0.0


def test_each_attribute_chooses_its_own_members() -> None:
    X, y, third = _validation()
    good, poor = np.full(len(y), 0.9), np.where(third == 0, 0.2, 0.9)
    candidates = {
        "p": {"type": _binary(y, good), "color": _binary(y, poor)},
        "q": {"type": _binary(y, poor), "color": _binary(y, good)},
        "r": {"type": _binary(y, good), "color": _binary(y, good)},
    }

    vote = choose_vote(candidates, X, {"type": y, "color": y})

    assert vote.members["type"][:2] == ["p", "r"] and vote.members["color"][:2] == ["q", "r"]
    assert vote.heads["type"].names == vote.members["type"]


def test_a_vote_needs_two_candidates() -> None:
    X, y, _ = _validation(10)
    with pytest.raises(ValueError, match="needs 2"):
        choose_vote({"only": {"t": _binary(y, np.full(len(y), 0.9))}}, X, {"t": y})
