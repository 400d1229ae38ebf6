"""Fitting one candidate within its time budget: a cross-validated search, then a refit per attribute.

The search runs on the clean training images only (at most ``SEARCH_MAX_ROWS`` of them, a
stratified sample), so its cost does not grow with augmented copies and no copy lands in
another fold than its source image; the chosen point is then refitted on every row, copies
included. Given over-exposed copies of the training images, each head gets an expert for
over-exposed frames, the same estimator at the same point fitted on those copies alone
(``vehicle_model.exposure``). Given greyscale validation images, each head then gets its
temperature for greyscale frames (``vehicle_model.calibration``).

The budget covers all of it but the temperature (one prediction); attributes share what is
left equally. Every search fold is timed, and a fit on n rows is costed as the slowest fold so
far times (n / the fold's rows) ** the candidate's ``cost_power``. The search stops before a
fold when the rest of its point, the refit and the expert would then overrun, so when not
even the first point fits, it is skipped after one fold and that point (the first of the
seeded order) is kept. A refit that would overrun on its own is made on a stratified
subsample sized to fit, clean rows first, never fewer rows than a fold fit, whose cost is
known. Decisions fall between fits, so a candidate ends within its budget plus about one fit
(two below one fit's budget: the probing fold and the smallest refit);
``FittedCandidate.stopped_early`` says what was cut.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
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

Clock = Callable[[], float]
Split = tuple[np.ndarray, Mapping[str, np.ndarray]]


@dataclass
class FittedCandidate:
    """A candidate's fitted heads and how they were chosen.

    Attributes:
        name: the registry name.
        heads: attribute -> fitted estimator.
        params: attribute -> chosen hyperparameters.
        cv_scores: attribute -> best cross-validated macro-F1 (nan when no point was scored).
        trials: attribute -> number of grid points scored within the budget.
        greyscale_temperatures: attribute -> the temperature of its greyscale frames, if fitted.
        stopped_early: attribute -> what the budget cut, e.g. "search stopped after 2 of 3
            points; refit on 4000 of 12000 rows"; no entry when nothing was cut.
        fit_seconds: wall time of search plus refit, all attributes.
        search_seconds: the part of ``fit_seconds`` spent searching.
    """

    name: str
    heads: dict[str, BaseEstimator]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    cv_scores: dict[str, float] = field(default_factory=dict)
    trials: dict[str, int] = field(default_factory=dict)
    greyscale_temperatures: dict[str, float] = field(default_factory=dict)
    stopped_early: dict[str, str] = field(default_factory=dict)
    fit_seconds: float = 0.0
    search_seconds: float = 0.0

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


@dataclass(frozen=True)
class SearchResult:
    """The chosen point and what its search measured.

    Attributes:
        params: the chosen hyperparameters.
        cv_score: their mean CV macro-F1; nan when no point was scored.
        trials: grid points scored.
        fit_seconds: the slowest successful fold fit of the chosen point (0.0 when none was).
        fit_rows: the rows of one fold fit.
        seconds: the search's wall time.
        stopped: why the search ended before the grid did; empty when it did not.
    """

    params: dict[str, Any]
    cv_score: float
    trials: int
    fit_seconds: float
    fit_rows: int
    seconds: float
    stopped: str = ""


def fit_candidate(
    name: str,
    X: np.ndarray,
    ys: Mapping[str, np.ndarray],
    seed: int = 0,
    budget_seconds: float = TIME_BUDGET_SECONDS,
    augmented: Split | None = None,
    greyscale: Split | None = None,
    over_exposed: Split | None = None,
    clock: Clock = time.perf_counter,
) -> FittedCandidate:
    """Searches and fits one head per attribute, all within ``budget_seconds`` (plus about one fit).

    Args:
        augmented: shifted training copies (X, attribute -> y), used in the refit only.
        over_exposed: over-exposed training copies (X, attribute -> y) to fit each head's
            expert for over-exposed frames on.
        greyscale: greyscale validation images (X, attribute -> y) to fit each head's
            temperature for greyscale frames on.
        clock: seconds from an arbitrary start; every budget decision reads it.
    """
    factory = CANDIDATES[name]
    fitted = FittedCandidate(name=name, heads={})
    started = clock()
    for i, (attribute, y) in enumerate(ys.items()):
        share = max(budget_seconds - (clock() - started), 0.0) / (len(ys) - i)
        copies, over = _labelled(augmented, attribute), _labelled(over_exposed, attribute)
        head, result, cut = _fit_head(factory(seed), (X, np.asarray(y).astype(str)), copies, over, seed, share, clock)
        if greyscale is not None and len(greyscale[0]):
            temperature = fit_temperature(head.predict_proba(greyscale[0]), head.classes_, greyscale[1][attribute])
            fitted.greyscale_temperatures[attribute] = temperature
            head = GreyscaleTempered(head, temperature)
        fitted.heads[attribute] = head
        fitted.params[attribute] = result.params
        fitted.cv_scores[attribute] = result.cv_score
        fitted.trials[attribute] = result.trials
        fitted.search_seconds += result.seconds
        if cut:
            fitted.stopped_early[attribute] = cut
    fitted.fit_seconds = clock() - started
    return fitted


def _labelled(split: Split | None, attribute: str) -> tuple[np.ndarray, np.ndarray] | None:
    if split is None or not len(split[0]):
        return None
    return split[0], np.asarray(split[1][attribute]).astype(str)


def _fit_head(
    spec: CandidateSpec,
    clean: tuple[np.ndarray, np.ndarray],
    copies: tuple[np.ndarray, np.ndarray] | None,
    over: tuple[np.ndarray, np.ndarray] | None,
    seed: int,
    budget_seconds: float,
    clock: Clock,
) -> tuple[BaseEstimator, SearchResult, str]:
    """One attribute's search, refit and expert within ``budget_seconds``.

    Returns:
        The fitted head (routed to its expert when there is one), the search's result and
        what the budget cut ("" when nothing).
    """
    deadline = clock() + budget_seconds
    refit_rows = [len(clean[1]) + (len(copies[1]) if copies else 0)] + ([len(over[1])] if over else [])
    result = search(spec, *_search_sample(*clean, seed), seed, budget_seconds, refit_rows, clock)
    fraction = _refit_fraction(result, refit_rows, deadline - clock(), spec.cost_power)
    X_refit, y_refit = _clean_first(clean, copies, fraction * refit_rows[0], seed)
    head = fit_ready(spec.estimator, result.params, len(y_refit)).fit(X_refit, y_refit)
    used = len(y_refit)
    if over is not None:
        rows = _stratified(over[1], fraction * len(over[1]), seed)
        expert = fit_ready(spec.estimator, result.params, len(rows)).fit(over[0][rows], over[1][rows])
        head = OverExposureRouted(head, expert)
        used += len(rows)
    cut = [result.stopped] if result.stopped else []
    if used < sum(refit_rows):
        cut.append(f"refit on {used} of {sum(refit_rows)} rows")
    return head, result, "; ".join(cut)


def search(
    spec: CandidateSpec,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    budget_seconds: float,
    refit_rows: Sequence[int] = (),
    clock: Clock = time.perf_counter,
) -> SearchResult:
    """Scores grid points in a seeded order, fold by fold, while the budget holds the next fold,
    the rest of its point and the fits of ``refit_rows`` rows that follow the search, each
    costed from the slowest fold fit so far.

    A point cut off between its folds is not scored. When not even the first point fits, the
    search is skipped after that point's first fold and the point is kept unscored.

    Args:
        refit_rows: the rows of each fit that must follow the search (the refit, the expert).
    """
    grid = list(ParameterGrid(spec.grid)) or [{}]
    order = np.random.default_rng(seed).permutation(len(grid))
    splits = list(StratifiedKFold(n_splits=_folds(y), shuffle=True, random_state=seed).split(X, y))
    fit_rows = len(splits[0][0])
    refit = sum((rows / fit_rows) ** spec.cost_power for rows in refit_rows)  # in search fits
    started = clock()
    deadline = started + budget_seconds
    scores: dict[int, float] = {}
    seconds: dict[int, float] = {}  # point -> its slowest successful fold fit
    for index in order:
        folds: list[float] = []
        for done, (train, test) in enumerate(splits):
            slowest = max(seconds.values(), default=0.0)
            # The first fold always runs: without its cost there is nothing to plan the refit by.
            if (scores or done) and clock() + (len(splits) - done + refit) * slowest > deadline:
                break
            fold_started = clock()
            folds.append(_fold_score(fit_ready(spec.estimator, grid[index], len(train)), X, y, train, test))
            if not math.isnan(folds[-1]):
                seconds[index] = max(seconds.get(index, 0.0), clock() - fold_started)
        else:
            scores[index] = float(np.mean(folds))
            continue
        break
    # A point with a failed fold scores nan and never wins.
    scored = [index for index, score in scores.items() if not math.isnan(score)]
    best = max(scored, key=scores.__getitem__, default=order[0])
    return SearchResult(
        params=dict(grid[best]),
        cv_score=scores.get(best, float("nan")),
        trials=len(scores),
        fit_seconds=seconds.get(best, 0.0),
        fit_rows=fit_rows,
        seconds=clock() - started,
        stopped=_stopped(len(scores), len(grid)),
    )


def _stopped(trials: int, points: int) -> str:
    if trials == points:
        return ""
    if trials == 0:
        return "search skipped: one point and the refit would overrun"
    return f"search stopped after {trials} of {points} points"


def _fold_score(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Macro-F1 on one fold; nan when the fit fails (scikit-learn says why in a warning)."""
    try:
        return float(cross_val_score(estimator, X, y, cv=[(train, test)], scoring="f1_macro")[0])
    except ValueError:  # "all the 1 fits failed"; the refit reports a real error
        return float("nan")


def _refit_fraction(result: SearchResult, refit_rows: Sequence[int], seconds_left: float, power: float) -> float:
    """The share of the refit's rows that ``seconds_left`` holds: 1.0 when all fit (or when no
    fit succeeded, so nothing was timed), and never fewer rows in all than one search fit,
    whose cost was measured."""
    needed = result.fit_seconds * sum((rows / result.fit_rows) ** power for rows in refit_rows)
    if needed == 0.0 or needed <= seconds_left:
        return 1.0
    fraction = (max(seconds_left, 0.0) / needed) ** (1 / power)
    return min(1.0, max(fraction, result.fit_rows / sum(refit_rows)))


def _clean_first(
    clean: tuple[np.ndarray, np.ndarray], copies: tuple[np.ndarray, np.ndarray] | None, n: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """About ``n`` rows: every clean one, then copies; a stratified sample of whichever runs short."""
    if copies is None or n < len(clean[1]):
        rows = _stratified(clean[1], n, seed)
        return clean[0][rows], clean[1][rows]
    rows = _stratified(copies[1], n - len(clean[1]), seed)
    return np.concatenate([clean[0], copies[0][rows]]), np.concatenate([clean[1], copies[1][rows]])


def _stratified(y: np.ndarray, n: float, seed: int) -> np.ndarray:
    """Sorted indices of about ``n`` rows (all when ``n`` covers them), each class in proportion
    and with at least ``CV_FOLDS`` rows where it has them, so a calibrated head can still fit."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    take = np.maximum((n * counts / len(y)).astype(int), np.minimum(counts, CV_FOLDS))
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]))


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
