"""Thresholds fitted to a target precision: the lowest score whose answers reach it, a bound
that small samples cannot clear, and the precision and coverage serving's decisions give."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tasks.training.evaluation import coverage_at_target, shift_table
from tasks.training.selective import (
    clopper_pearson_lower,
    fit_policy,
    fit_threshold,
    risk_coverage_figure,
    selective_metrics,
)
from vehicle_model.decisions import DecisionPolicy
from vehicle_model.featurizer import CHROMA_COLUMN, FEATURE_DIM

pytestmark = pytest.mark.unit


def _scores_right_above(n: int, cut: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform in [0.5, 1]: answers at or above ``cut`` always right, below it right half the time."""
    scores = rng.uniform(0.5, 1.0, size=n)
    correct = np.where(scores >= cut, True, rng.random(n) < 0.5)
    return scores, correct


def test_the_threshold_is_the_lowest_score_whose_answers_reach_the_target() -> None:
    scores, correct = _scores_right_above(4000, 0.8, np.random.default_rng(0))

    fit = fit_threshold({"clean": (scores, correct)}, target=0.98)

    assert fit.threshold is not None and 0.75 < fit.threshold < 0.8
    answered = scores >= fit.threshold
    assert fit.coverage["clean"] == pytest.approx(answered.mean())
    assert fit.precision["clean"] == pytest.approx(correct[answered].mean())
    assert clopper_pearson_lower(correct[answered].sum(), answered.sum()) >= 0.98
    # Every lower score would let in answers that break the bound: it is the lowest that holds.
    for lower in scores[scores < fit.threshold]:
        kept = scores >= lower
        assert clopper_pearson_lower(correct[kept].sum(), kept.sum()) < 0.98


def test_every_condition_must_reach_the_target_not_their_pool() -> None:
    rng = np.random.default_rng(3)
    easy = _scores_right_above(4000, 0.6, rng)
    hard = _scores_right_above(1000, 0.9, rng)  # a shift under which the head stays as sure but is wrong more

    alone = fit_threshold({"clean": easy}, target=0.98)
    both = fit_threshold({"clean": easy, "blur": hard}, target=0.98)
    pooled = fit_threshold({"all": (np.r_[easy[0], hard[0]], np.r_[easy[1], hard[1]])}, target=0.98)

    assert alone.threshold < 0.6
    assert 0.88 < both.threshold < 0.9 and both.precision["blur"] >= 0.98
    assert hard[1][hard[0] >= pooled.threshold].mean() < 0.98, "in a pool the easy condition carries the hard one"
    assert both.coverage["clean"] < alone.coverage["clean"]


def test_a_target_no_threshold_reaches_means_never_confident() -> None:
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.5, 1.0, size=2000)
    correct = rng.random(2000) < 0.9  # right nine times in ten at every score

    fit = fit_threshold({"clean": (scores, correct)}, target=0.98)

    assert fit.threshold is None and fit.coverage == {"clean": 0.0} and fit.precision == {}
    assert len(fit.curves["clean"].coverages) == 2000, "the curve is still reported"


def test_a_few_right_answers_are_not_evidence_enough() -> None:
    # 45 answers, every one right: 100% observed, but the 60% bound is 0.4 ** (1 / 45) = 0.9798.
    few = fit_threshold({"clean": (np.linspace(0.9, 1.0, 45), np.ones(45, dtype=bool))}, target=0.98)
    enough = fit_threshold({"clean": (np.linspace(0.9, 1.0, 46), np.ones(46, dtype=bool))}, target=0.98)

    assert few.threshold is None
    assert enough.threshold == pytest.approx(0.9) and enough.coverage == {"clean": 1.0}
    assert clopper_pearson_lower(np.array([45, 0]), np.array([45, 5])) == pytest.approx([0.4 ** (1 / 45), 0.0])
    assert clopper_pearson_lower(np.array([79]), np.array([79]), confidence=0.95) == pytest.approx(0.05 ** (1 / 79))


def test_tied_scores_are_answered_together() -> None:
    scores = np.array([0.99] * 200 + [0.7] * 100)
    correct = np.r_[np.ones(200, dtype=bool), np.zeros(100, dtype=bool)]

    fit = fit_threshold({"clean": (scores, correct)}, target=0.98)

    assert fit.threshold == 0.99 and fit.coverage["clean"] == pytest.approx(2 / 3)
    assert list(fit.curves["clean"].scores) == [0.99, 0.7]


def _colour_rows(n: int, rng: np.random.Generator, greyscale: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows whose first columns tell type and colour apart, half of them clearly."""
    types = rng.choice(["bus", "van"], size=n)
    colours = rng.choice(["red", "blue"], size=n)
    X = rng.normal(size=(n, FEATURE_DIM))
    strength = np.where(rng.random(n) < 0.5, 4.0, 0.3)
    X[:, 0] += np.where(types == "bus", strength, -strength)
    X[:, 1] += np.where(colours == "red", strength, -strength)
    X[:, CHROMA_COLUMN] = 0.0 if greyscale else 0.5
    return X, {"vehicle_type": types, "color": colours}


def test_the_policy_leaves_greyscale_rows_out_of_a_colour_fit_and_scores_as_serving_decides() -> None:
    rng = np.random.default_rng(2)
    X, ys = _colour_rows(3000, rng)
    heads = {a: LogisticRegression(max_iter=300).fit(X[:, :2], y) for a, y in ys.items()}
    heads = {a: _FirstColumns(h) for a, h in heads.items()}
    X_grey, ys_grey = _colour_rows(3000, rng, greyscale=True)

    policy, fits = fit_policy(heads, {"clean": (X, ys), "greyscale": (X_grey, ys_grey)}, target=0.98)

    assert policy.colour_attributes == ("color",)
    assert set(fits["color"].curves) == {"clean"}, "colour on greyscale is undetermined, never fitted"
    assert set(fits["vehicle_type"].curves) == {"clean", "greyscale"}
    assert policy.coverage == {a: fits[a].coverage["clean"] for a in ys}
    assert all(t is not None for t in policy.thresholds.values())
    assert DecisionPolicy.from_json(policy.to_json()) == policy
    clean = selective_metrics(heads, policy, X, ys, "test")
    grey = selective_metrics(heads, policy, X_grey, ys_grey, "shift.greyscale")
    for attribute in ys:
        assert clean[f"test.selective.{attribute}.precision"] >= 0.97
        assert 0.3 < clean[f"test.selective.{attribute}.coverage"] < 0.8
        assert clean[f"test.selective.{attribute}.undetermined"] == 0.0
    assert grey["shift.greyscale.selective.color.undetermined"] == 1.0
    assert grey["shift.greyscale.selective.color.coverage"] == 0.0
    assert "shift.greyscale.selective.color.precision" not in grey, "no confident answer, no precision"
    assert grey["shift.greyscale.selective.vehicle_type.coverage"] > 0.3
    mean = np.mean([clean[f"test.selective.{a}.coverage"] for a in ys])
    assert coverage_at_target(clean, "test") == pytest.approx(mean)
    assert coverage_at_target({}, "test") is None
    risk_coverage_figure(fits["color"], "color", 0.98)  # draws without a display


def test_the_shift_table_shows_each_conditions_confident_precision_and_coverage() -> None:
    base = {"macro_f1": 0.9, "ece": 0.02}
    test = {f"test.color.{m}": v for m, v in base.items()}
    test |= {"test.selective.color.precision": 0.99, "test.selective.color.coverage": 0.93}
    shifted = {f"shift.greyscale.color.{m}": v for m, v in base.items()}
    shifted |= {"shift.greyscale.selective.color.coverage": 0.0}

    table = shift_table(test, shifted, ["color"]).set_index("condition")

    assert table.loc["clean", "color.confident_precision"] == 0.99
    assert table.loc["clean", "color.confident_coverage"] == 0.93
    assert table.loc["greyscale", "color.confident_coverage"] == 0.0
    assert np.isnan(table.loc["greyscale", "color.confident_precision"])


class _FirstColumns:
    """A head that reads the two informative columns of full featurizer rows."""

    def __init__(self, head: LogisticRegression) -> None:
        self.head = head
        self.classes_ = head.classes_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.head.predict_proba(X[:, :2])
