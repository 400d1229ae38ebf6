"""The six candidate heads: one registry mapping name -> factory.

Each factory returns an unfitted estimator with calibrated ``predict_proba`` and a small
hyperparameter grid searched by cross-validation within the candidate's time budget.
Adding a seventh candidate is one entry in ``CANDIDATES``. Every head is a pipeline whose
first step keeps the columns meant for it (``vehicle_model.featurizer.model_inputs``), so
callers pass featurizer output as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC, LinearSVC

from vehicle_model.featurizer import model_inputs


@dataclass(frozen=True)
class CandidateSpec:
    """An unfitted estimator and the grid its search explores (Pipeline step__param names).

    Attributes:
        cost_power: a fit of k times the rows takes k ** cost_power times as long; the budget
            plans the refit (several times the search's rows) from the search's timed fits.
    """

    estimator: BaseEstimator
    grid: dict[str, list[Any]] = field(default_factory=dict)
    cost_power: float = 1.0


def _inputs() -> tuple[str, FunctionTransformer]:
    return ("inputs", FunctionTransformer(model_inputs))


def logistic_regression(seed: int) -> CandidateSpec:
    model = Pipeline(
        [_inputs(), ("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=3000, random_state=seed))]
    )
    return CandidateSpec(model, {"clf__C": [0.01, 0.1, 1.0]})


def linear_svm(seed: int) -> CandidateSpec:
    # The dual solver: "auto" picks the primal one when rows outnumber features, and on these
    # features it is several times slower, enough to overrun the search budget. Its stopping
    # tolerance is liblinear's own default for the dual solvers, not scikit-learn's 1e-4: on
    # these features every grid point scores the same with it, in a third of the time.
    svm = LinearSVC(dual=True, tol=0.1, max_iter=5000, random_state=seed)
    # Temperature scaling, not one-vs-rest sigmoids: renormalised over the classes, the sigmoids
    # leave the SVM underconfident. Both measurements: docs/model-quality.md, "The code's choices".
    calibrated = CalibratedClassifierCV(svm, cv=3, method="temperature")
    model = Pipeline([_inputs(), ("scale", StandardScaler()), ("clf", calibrated)])
    # Coordinate descent needs more passes over more rows: fits grow as rows ** 1.2-1.4.
    return CandidateSpec(model, {"clf__estimator__C": [0.001, 0.01, 0.1]}, cost_power=1.5)


def rbf_svm(seed: int) -> CandidateSpec:
    model = Pipeline(
        [
            _inputs(),
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=128, random_state=seed)),
            ("clf", CalibratedClassifierCV(SVC(kernel="rbf"), ensemble=False, cv=3, method="sigmoid")),
        ]
    )
    # A kernel SVM's fit grows faster than its rows (as rows ** 1.5 here).
    return CandidateSpec(model, {"clf__estimator__C": [1.0, 10.0]}, cost_power=1.5)


def extra_trees(seed: int) -> CandidateSpec:
    model = Pipeline([_inputs(), ("clf", ExtraTreesClassifier(n_estimators=300, n_jobs=1, random_state=seed))])
    # Trees grow deeper with more rows: fits grow as rows ** 1.0-1.15 (n log n).
    grid = {"clf__max_features": ["sqrt", 0.05], "clf__min_samples_leaf": [1, 2]}
    return CandidateSpec(model, grid, cost_power=1.1)


def hist_gradient_boosting(seed: int) -> CandidateSpec:
    # Boosting over 1.4k raw dimensions is slow and overfits on a few thousand images;
    # 64 principal components keep it in budget.
    model = Pipeline(
        [
            _inputs(),
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=64, random_state=seed)),
            ("clf", HistGradientBoostingClassifier(max_iter=150, random_state=seed)),
        ]
    )
    return CandidateSpec(model, {"clf__learning_rate": [0.1, 0.2], "clf__max_leaf_nodes": [15, 31]})


def k_nearest_neighbors(seed: int) -> CandidateSpec:
    model = Pipeline(
        [
            _inputs(),
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=64, random_state=seed)),
            ("clf", KNeighborsClassifier(weights="distance")),
        ]
    )
    return CandidateSpec(model, {"clf__n_neighbors": [5, 15]})


# Slowest first: the flow submits them in this order, so the longest fits start at once and the
# short ones fill the workers' gaps at the end (on the default data: 116, 69, 39, 18, 6 and 3 s).
CANDIDATES: dict[str, Callable[[int], CandidateSpec]] = {
    "extra_trees": extra_trees,
    "hist_gradient_boosting": hist_gradient_boosting,
    "linear_svm": linear_svm,
    "rbf_svm": rbf_svm,
    "logistic_regression": logistic_regression,
    "knn": k_nearest_neighbors,
}


def candidate_names(requested: list[str] | None) -> list[str]:
    """The requested candidates, all of them when none are; unknown names are an error."""
    names = list(requested or CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise ValueError(f"unknown candidates {unknown}; choose from {sorted(CANDIDATES)}")
    return names
