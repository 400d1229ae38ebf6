"""The budgeted search: failing grid points never win, at least one point is tried."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tasks.training.candidates import CandidateSpec
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
        params, cv_score, trials = search(spec, X, y, seed=seed, budget_seconds=60)
    assert params == {"clf__C": 1.0}
    assert trials == 2 and cv_score > 0.9


def test_an_exhausted_budget_still_tries_one_point() -> None:
    spec = CandidateSpec(LogisticRegression(), {"C": [0.1, 1.0, 10.0]})
    X, y = _data()
    params, _, trials = search(spec, X, y, seed=0, budget_seconds=0)
    assert trials == 1 and params["C"] in (0.1, 1.0, 10.0)


def test_augmented_copies_join_the_refit() -> None:
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, FEATURE_DIM)), np.array(["a", "b"] * 30)
    X[y == "b", :300] += 1
    X_copies = X[:40] + rng.normal(scale=0.5, size=(40, FEATURE_DIM))
    fitted = fit_candidate("knn", X, {"color": y}, budget_seconds=60, augmented=(X_copies, {"color": y[:40]}))
    assert fitted.heads["color"].named_steps["clf"].n_samples_fit_ == 100
    assert fitted.trials["color"] == 2 and fitted.cv_scores["color"] > 0.9
