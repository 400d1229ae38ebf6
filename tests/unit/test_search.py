"""The budgeted search: failing grid points never win, and search plus refit keep the budget."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tasks.training.candidates import CANDIDATES, CandidateSpec
from tasks.training.search import fit_candidate, search
from vehicle_model.featurizer import FEATURE_DIM

pytestmark = pytest.mark.unit


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (30, 4)), rng.normal(3, 1, (30, 4))])
    return X, np.array(["a"] * 30 + ["b"] * 30)


@pytest.mark.parametrize("seed", range(4))  # the grid order depends on the seed
def test_a_grid_point_whose_folds_fail_is_never_chosen(seed: int) -> None:
    spec = CandidateSpec(
        Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]), {"clf__C": [-1.0, 1.0]}
    )
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about the failed fits
        result = search(spec, X, y, seed=seed, budget_seconds=60)
    assert result.params == {"clf__C": 1.0}
    assert result.trials == 2 and result.cv_score > 0.9 and result.stopped == ""


def test_an_exhausted_budget_skips_the_search_and_keeps_the_first_point_of_the_seeded_order() -> None:
    spec = CandidateSpec(LogisticRegression(), {"C": [0.1, 1.0, 10.0]})
    X, y = _data()
    result = search(spec, X, y, seed=0, budget_seconds=0)
    first = list(ParameterGrid(spec.grid))[np.random.default_rng(0).permutation(3)[0]]
    assert result.params == first and result.trials == 0 and math.isnan(result.cv_score)
    assert result.stopped.startswith("search skipped")


def test_augmented_copies_join_the_refit() -> None:
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, FEATURE_DIM)), np.array(["a", "b"] * 30)
    X[y == "b", :300] += 1
    X_copies = X[:40] + rng.normal(scale=0.5, size=(40, FEATURE_DIM))
    fitted = fit_candidate("knn", X, {"color": y}, budget_seconds=60, augmented=(X_copies, {"color": y[:40]}))
    assert fitted.heads["color"].named_steps["clf"].n_samples_fit_ == 100
    assert fitted.trials["color"] == 2 and fitted.cv_scores["color"] > 0.9
    assert fitted.stopped_early == {}


class FakeClock:
    """Seconds that pass when a ``TimedFit`` fits, and a millisecond at each reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now

    def __deepcopy__(self, memo: dict) -> FakeClock:
        return self  # clone() deep-copies parameters; every fit must move this one clock


class TimedFit(ClassifierMixin, BaseEstimator):
    """Logistic regression whose fit takes one second per row on ``clock``; keeps its rows."""

    def __init__(self, clock: FakeClock | None = None, C: float = 1.0) -> None:
        self.clock = clock
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> TimedFit:
        self.clock.now += len(y)
        self.X_ = X
        self.model_ = LogisticRegression(C=self.C).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)


CLEAN, COPY = 0.0, 1.0  # the last feature column says which rows are copies


def _fit_timed(monkeypatch: pytest.MonkeyPatch, budget_seconds: float, attributes: tuple[str, ...] = ("color",)):
    """Per attribute: 60 clean rows (a search fit: 40 rows, 40 s), 240 copies and 60
    over-exposed rows (the refit and its expert: 360 s), three grid points, seed 0.

    Returns:
        The fitted candidate and its first attribute's refit rows.
    """
    clock = FakeClock()
    monkeypatch.setitem(CANDIDATES, "timed", lambda seed: CandidateSpec(TimedFit(clock), {"C": [0.1, 1.0, 10.0]}))
    X, y = _data()
    X = np.column_stack([X, np.full(60, CLEAN)])
    copies = np.vstack([X] * 4)
    copies[:, -1] = COPY
    split = (copies, dict.fromkeys(attributes, np.tile(y, 4)))
    over = (X.copy(), dict.fromkeys(attributes, y))
    ys = dict.fromkeys(attributes, y)
    fitted = fit_candidate(
        "timed", X, ys, budget_seconds=budget_seconds, augmented=split, over_exposed=over, clock=clock
    )
    return fitted, fitted.heads[attributes[0]].head.X_


def test_the_search_stops_where_the_refit_on_every_row_still_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    # All three points (360 s) and the refit (360 s) would take 720 s.
    fitted, refit = _fit_timed(monkeypatch, budget_seconds=620)
    assert fitted.search_seconds == pytest.approx(2 * 3 * 40, abs=1) and fitted.fit_seconds == pytest.approx(600, abs=1)
    assert fitted.trials["color"] == 2 and len(refit) == 300
    assert fitted.stopped_early == {"color": "search stopped after 2 of 3 points"}


def test_a_budget_without_room_for_one_point_skips_the_search_and_refits_on_fewer_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After the first fold (40 s) even one point and the refit would need 480 s.
    fitted, refit = _fit_timed(monkeypatch, budget_seconds=240)
    assert fitted.fit_seconds <= 240 + 40, "within the budget plus one search fit"
    assert fitted.trials["color"] == 0 and fitted.params["color"] == {"C": 10.0}  # seed 0's first point
    assert fitted.stopped_early["color"].startswith("search skipped")
    clean, copies = refit[refit[:, -1] == CLEAN], refit[refit[:, -1] == COPY]
    assert len(clean) == 60 and 0 < len(copies) < 240, "every clean row comes before any copy"
    assert fitted.stopped_early["color"].endswith(f"refit on {len(refit) + 32} of 360 rows")


def test_a_budget_smaller_than_one_fit_refits_each_attribute_on_as_many_rows_as_one_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first attribute overruns the whole budget; the second starts with none left.
    fitted, _ = _fit_timed(monkeypatch, budget_seconds=1, attributes=("color", "vehicle_type"))
    for attribute, head in fitted.heads.items():
        refit = head.head.X_
        assert len(refit) < 60 and set(refit[:, -1]) == {CLEAN}, attribute
        assert fitted.trials[attribute] == 0 and "refit on" in fitted.stopped_early[attribute]
    assert fitted.fit_seconds <= 2 * (40 + 40), "per attribute, the probing fold and a refit the size of one fit"
