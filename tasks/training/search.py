"""Fitting one candidate: a budgeted cross-validated search, then a refit per attribute.

The search runs on the clean training images only (at most ``SEARCH_MAX_ROWS`` of them, a
stratified sample), so its cost does not grow with augmented copies and no copy lands in
another fold than its source image; the chosen point is then refitted on every row, copies
included. Given over-exposed copies of the training images, each head gets an expert for
over-exposed frames, the same estimator at the same point fitted on those copies alone
(``vehicle_model.exposure``). Given greyscale validation images, each head then gets its
temperature for greyscale frames (``vehicle_model.calibration``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import PCA
from sklearn.model_selection import ParameterGrid, StratifiedKFold, cross_val_score, train_test_split

from tasks.defaults import TIME_BUDGET_SECONDS
from tasks.training.candidates import CANDIDATES, CandidateSpec
from vehicle_model.calibration import GreyscaleTempered, temper
from vehicle_model.exposure import OverExposureRouted

CV_FOLDS = 3
SEARCH_MAX_ROWS = 3000
TEMPERATURE_BOUNDS = (0.05, 20.0)


@dataclass
class FittedCandidate:
    """A candidate's fitted heads and how they were chosen.

    Attributes:
        name: the registry name.
        heads: attribute -> fitted estimator.
        params: attribute -> chosen hyperparameters.
        cv_scores: attribute -> best cross-validated macro-F1.
        trials: attribute -> number of grid points evaluated within the budget.
        greyscale_temperatures: attribute -> the temperature of its greyscale frames, if fitted.
        fit_seconds: wall time of search plus refit, all attributes.
    """

    name: str
    heads: dict[str, BaseEstimator]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    cv_scores: dict[str, float] = field(default_factory=dict)
    trials: dict[str, int] = field(default_factory=dict)
    greyscale_temperatures: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0

    def model_bytes(self) -> int:
        buffer = io.BytesIO()
        joblib.dump(self.heads, buffer)
        return buffer.getbuffer().nbytes

    def predict_ms_per_image(self, X: np.ndarray, repeats: int = 3) -> float:
        """Head latency per image on precomputed features (the backbone is shared by all)."""
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for head in self.heads.values():
                head.predict_proba(X)
            best = min(best, time.perf_counter() - started)
        return 1000.0 * best / max(len(X), 1)


def fit_candidate(
    name: str,
    X: np.ndarray,
    ys: Mapping[str, np.ndarray],
    seed: int = 0,
    budget_seconds: float = TIME_BUDGET_SECONDS,
    augmented: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None,
    greyscale: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None,
    over_exposed: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None,
) -> FittedCandidate:
    """Searches and fits one head per attribute, sharing the time budget between attributes.

    Args:
        augmented: shifted training copies (X, attribute -> y), used in the refit only.
        over_exposed: over-exposed training copies (X, attribute -> y) to fit each head's
            expert for over-exposed frames on.
        greyscale: greyscale validation images (X, attribute -> y) to fit each head's
            temperature for greyscale frames on.
    """
    factory = CANDIDATES[name]
    fitted = FittedCandidate(name=name, heads={})
    started = time.perf_counter()
    for i, (attribute, y) in enumerate(ys.items()):
        remaining = budget_seconds - (time.perf_counter() - started)
        share = max(remaining / (len(ys) - i), 0.0)
        y = np.asarray(y).astype(str)
        spec = factory(seed)
        params, cv_score, trials = search(spec, *_search_sample(X, y, seed), seed, share)
        X_all, y_all = X, y
        if augmented is not None:
            X_all = np.concatenate([X, augmented[0]])
            y_all = np.concatenate([y, np.asarray(augmented[1][attribute]).astype(str)])
        head = fit_ready(spec.estimator, params, len(y_all)).fit(X_all, y_all)
        if over_exposed is not None and len(over_exposed[0]):
            y_over = np.asarray(over_exposed[1][attribute]).astype(str)
            head = OverExposureRouted(head, fit_ready(spec.estimator, params, len(y_over)).fit(over_exposed[0], y_over))
        if greyscale is not None and len(greyscale[0]):
            temperature = fit_temperature(head.predict_proba(greyscale[0]), head.classes_, greyscale[1][attribute])
            fitted.greyscale_temperatures[attribute] = temperature
            head = GreyscaleTempered(head, temperature)
        fitted.heads[attribute] = head
        fitted.params[attribute] = params
        fitted.cv_scores[attribute] = cv_score
        fitted.trials[attribute] = trials
    fitted.fit_seconds = time.perf_counter() - started
    return fitted


def search(
    spec: CandidateSpec, X: np.ndarray, y: np.ndarray, seed: int, budget_seconds: float
) -> tuple[dict[str, Any], float, int]:
    """Tries grid points in a seeded order while the next one is expected to end within the
    budget (the slowest point so far is the estimate; at least one point is tried).

    Returns:
        The best parameters, their CV macro-F1 (nan when there was one point and no search)
        and the number of points tried.
    """
    grid = list(ParameterGrid(spec.grid)) or [{}]
    order = np.random.default_rng(seed).permutation(len(grid))
    best_params, best_score, trials = grid[order[0]], float("nan"), 0
    if len(grid) > 1:
        deadline = time.perf_counter() + budget_seconds
        slowest = 0.0
        folds = StratifiedKFold(n_splits=_folds(y), shuffle=True, random_state=seed)
        for index in order:
            point_started = time.perf_counter()
            estimator = fit_ready(spec.estimator, grid[index], int(len(y) * (1 - 1 / folds.n_splits)))
            try:
                value = float(np.mean(cross_val_score(estimator, X, y, cv=folds, scoring="f1_macro")))
            except ValueError:  # every fold failed at this point; the refit below reports a real error
                value = float("nan")
            trials += 1
            # A point whose folds all failed scores nan and never wins.
            if not np.isnan(value) and (np.isnan(best_score) or value > best_score):
                best_params, best_score = grid[index], value
            slowest = max(slowest, time.perf_counter() - point_started)
            if time.perf_counter() + slowest > deadline:
                break
    return dict(best_params), best_score, trials


def fit_temperature(proba: np.ndarray, classes: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the log loss of ``proba`` on labels ``y``; a label the
    head has no class for cannot be helped by any temperature and is left out."""
    column = {label: i for i, label in enumerate(np.asarray(classes).astype(str))}
    labels = np.asarray(y).astype(str)
    rows = [i for i, label in enumerate(labels) if label in column]
    if not rows:
        return 1.0
    known, columns = proba[rows], [column[labels[i]] for i in rows]

    def log_loss(temperature: float) -> float:
        right = temper(known, temperature)[np.arange(len(rows)), columns]
        return float(-np.log(np.clip(right, 1e-12, 1.0)).mean())

    return float(minimize_scalar(log_loss, bounds=TEMPERATURE_BOUNDS, method="bounded").x)


def fit_ready(estimator: BaseEstimator, params: dict[str, Any], n_samples: int) -> BaseEstimator:
    """A fresh clone with ``params`` set and any PCA shrunk to fit ``n_samples`` rows."""
    model = clone(estimator).set_params(**params)
    steps = model.steps if hasattr(model, "steps") else []
    for step_name, step in steps:
        if isinstance(step, PCA) and isinstance(step.n_components, int):
            model.set_params(**{f"{step_name}__n_components": min(step.n_components, max(n_samples - 1, 1))})
    return model


def _search_sample(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``SEARCH_MAX_ROWS`` rows, stratified by ``y``, so a search's cost is bounded."""
    if len(y) <= SEARCH_MAX_ROWS:
        return X, y
    X_sample, _, y_sample, _ = train_test_split(X, y, train_size=SEARCH_MAX_ROWS, stratify=y, random_state=seed)
    return X_sample, y_sample


def _folds(y: np.ndarray) -> int:
    smallest = int(np.min(np.unique(y, return_counts=True)[1]))
    return max(2, min(CV_FOLDS, smallest))
