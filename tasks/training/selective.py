"""Selective classification: per attribute, the score above which answers are trusted.

A head's calibrated score is its largest class probability. For each attribute the threshold
is the lowest score at which the answers at or above it reach the target precision on every
condition of the validation images: the clean images and each shifted copy of them (one
copy per shift kind, never a test image). Every condition must reach it, not their pool: a
pooled fit lets the easy conditions carry the hard ones, and on the default data it let the
type under blur fall to 0.94 with a 0.98 target (docs/model-quality.md, "Selective answers").
Colour on greyscale rows is left out of a colour attribute's fit: those answers are
``undetermined`` whatever their score (``vehicle_model.decisions``).

Small samples: a condition reaches the target at a threshold only when the one-sided
Clopper-Pearson lower bound (``CONFIDENCE``) of the precision of its answers there does. The
bound is exact for a binomial and tightens with the number of answers, so a threshold that
keeps a handful of lucky answers is never chosen: with every answer right, a 0.98 target at
60% needs at least 46 answers (0.4 ** (1 / 46) > 0.98). Where no threshold reaches it on
every condition (too few validation images, or a head that is never that good under some
shift) the threshold is None and the attribute is never answered confidently: an honest
"uncertain" rather than a guessed cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import beta

from tasks.training.evaluation import SELECTIVE
from vehicle_model.decisions import CONFIDENT, UNDETERMINED, DecisionPolicy, colour_attributes, decide
from vehicle_model.featurizer import is_greyscale

# The bound's level, measured on the vote's heads, seeds 0 and 1 (docs/model-quality.md, "Selective
# answers"): from 0.6 to 0.68 confident answers keep a precision of at least 0.978 on the test split
# and every shift kind while clean coverage stays at 0.917 or more per attribute; from 0.69 up the
# type threshold of seed 0 jumps and its clean coverage falls to 0.891 (0.8 left colour at 0.855);
# at 0.5 a single linear SVM's colour under blur fell to 0.964. 0.6 sits in the middle of what holds.
CONFIDENCE = 0.6
CLEAN = "clean"  # the condition of the validation images as they are

Sample = tuple[np.ndarray, Mapping[str, np.ndarray]]  # features, attribute -> labels


@dataclass(frozen=True)
class Curve:
    """One condition's answers as the threshold falls through its distinct scores.

    Attributes:
        scores: the distinct scores, highest first.
        coverages: the share of the condition's answers at or above each.
        risks: 1 - the observed precision of those answers.
        lower_bounds: their precision's lower bound at ``CONFIDENCE``.
    """

    scores: np.ndarray
    coverages: np.ndarray
    risks: np.ndarray
    lower_bounds: np.ndarray


@dataclass(frozen=True)
class ThresholdFit:
    """One attribute's threshold, and what it gives on each condition.

    Attributes:
        threshold: the lowest score answered confidently; None when no score reaches the
            target on every condition.
        precision: condition -> the observed precision of its answers at or above the threshold
            (absent where there are none).
        coverage: condition -> the share of its answers at or above the threshold.
        curves: condition -> its risk-coverage curve.
    """

    threshold: float | None
    precision: dict[str, float]
    coverage: dict[str, float]
    curves: dict[str, Curve]


def fit_threshold(
    conditions: Mapping[str, tuple[np.ndarray, np.ndarray]], target: float, confidence: float = CONFIDENCE
) -> ThresholdFit:
    """The lowest score at which every condition's answers at or above it have a precision
    bound of at least ``target``.

    Args:
        conditions: condition -> (N scores, N booleans whether each answer is right); a
            condition without rows is ignored.
        target: the precision to reach.
        confidence: the level of the one-sided lower bound.
    """
    conditions = {name: pair for name, pair in conditions.items() if len(pair[0])}
    candidates = np.unique(np.concatenate([s for s, _ in conditions.values()] or [np.zeros(0)]))[::-1]
    reached = np.ones(len(candidates), dtype=bool)
    answered: dict[str, np.ndarray] = {}
    right: dict[str, np.ndarray] = {}
    for name, (scores, correct) in conditions.items():
        answered[name], right[name] = _at_or_above(scores, correct, candidates)
        reached &= clopper_pearson_lower(right[name], answered[name], confidence) >= target
    curves = {name: _curve(scores, correct, confidence) for name, (scores, correct) in conditions.items()}
    if not reached.any():
        return ThresholdFit(None, {}, {name: 0.0 for name in conditions}, curves)
    at = np.flatnonzero(reached)[-1]  # candidates run high to low: the last is the lowest score
    return ThresholdFit(
        threshold=float(candidates[at]),
        precision={n: right[n][at] / answered[n][at] for n in conditions if answered[n][at]},
        coverage={n: answered[n][at] / len(conditions[n][0]) for n in conditions},
        curves=curves,
    )


def _at_or_above(scores: np.ndarray, correct: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold: how many answers score at or above it, and how many of those are right."""
    order = np.argsort(-scores, kind="stable")
    answered = np.searchsorted(-scores[order], -thresholds, side="right")
    right = np.r_[0, np.cumsum(correct[order])][answered]
    return answered, right


def _curve(scores: np.ndarray, correct: np.ndarray, confidence: float) -> Curve:
    distinct = np.unique(scores)[::-1]
    answered, right = _at_or_above(scores, correct, distinct)
    return Curve(
        scores=distinct,
        coverages=answered / len(scores),
        risks=1.0 - right / answered,
        lower_bounds=clopper_pearson_lower(right, answered, confidence),
    )


def clopper_pearson_lower(hits: np.ndarray, n: np.ndarray, confidence: float = CONFIDENCE) -> np.ndarray:
    """The exact one-sided lower bound of a binomial proportion (0 without hits)."""
    hits, n = np.asarray(hits, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(1.0 - confidence, hits, n - hits + 1.0)
    return np.where(hits > 0, np.nan_to_num(bound), 0.0)


def fit_policy(
    heads: Mapping[str, object], conditions: Mapping[str, Sample], target: float, confidence: float = CONFIDENCE
) -> tuple[DecisionPolicy, dict[str, ThresholdFit]]:
    """Each attribute's threshold on the validation images under each condition.

    Args:
        heads: attribute -> fitted head.
        conditions: condition (``CLEAN`` and each shift kind) -> rows of featurizer output and labels.
        target: the precision every condition must reach.
        confidence: the level of the lower bound.

    Returns:
        The policy to ship with the heads (its coverage is the clean condition's), and each
        attribute's fit (for its curves).
    """
    colours = colour_attributes(heads)
    fits = {
        attribute: fit_threshold(
            {name: _scored(head, X, ys[attribute], attribute in colours) for name, (X, ys) in conditions.items()},
            target,
            confidence,
        )
        for attribute, head in heads.items()
    }
    policy = DecisionPolicy(
        thresholds={a: f.threshold for a, f in fits.items()},
        target_precision=target,
        colour_attributes=colours,
        coverage={a: f.coverage.get(CLEAN, 0.0) for a, f in fits.items()},
    )
    return policy, fits


def _scored(head, X: np.ndarray, y: np.ndarray, colour: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row's score and whether its answer is right; a colour's greyscale rows left out."""
    proba = head.predict_proba(X)
    correct = np.asarray(head.classes_).astype(str)[proba.argmax(axis=1)] == np.asarray(y).astype(str)
    keep = ~is_greyscale(X) if colour else np.ones(len(X), dtype=bool)
    return proba.max(axis=1)[keep], correct[keep]


def selective_metrics(
    heads: Mapping[str, object], policy: DecisionPolicy, X: np.ndarray, ys: Mapping[str, np.ndarray], prefix: str
) -> dict[str, float]:
    """``<prefix>.selective.<attribute>.{precision,coverage,undetermined}`` as serving decides.

    Coverage is the share of all rows answered ``confident``, ``undetermined`` the share the
    frame could not carry; precision is over the confident answers and absent when there are
    none (it is undefined, and a 0 or a 1 would be read as a result).
    """
    probabilities = {attribute: head.predict_proba(X) for attribute, head in heads.items()}
    verdicts = decide(policy, probabilities, is_greyscale(X))
    metrics: dict[str, float] = {}
    for attribute, head in heads.items():
        decisions = np.array([v.decision for v in verdicts[attribute]])
        confident = decisions == CONFIDENT
        predicted = np.asarray(head.classes_).astype(str)[probabilities[attribute].argmax(axis=1)]
        key = f"{prefix}.{SELECTIVE}.{attribute}"
        metrics[f"{key}.coverage"] = float(confident.mean()) if len(X) else 0.0
        metrics[f"{key}.undetermined"] = float((decisions == UNDETERMINED).mean()) if len(X) else 0.0
        if confident.any():
            right = predicted[confident] == np.asarray(ys[attribute]).astype(str)[confident]
            metrics[f"{key}.precision"] = float(right.mean())
    return metrics


def risk_coverage_figure(fit: ThresholdFit, attribute: str, target: float) -> Figure:
    """Risk (1 - precision) against coverage as the threshold falls, one line per condition,
    the target risk, and where the chosen threshold puts each condition; built without pyplot
    so no global backend is touched."""
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.subplots()
    for name, curve in fit.curves.items():
        style = {"linewidth": 2.0, "color": "black"} if name == CLEAN else {"linewidth": 0.9, "alpha": 0.8}
        (line,) = axes.plot(curve.coverages, curve.risks, label=name, **style)
        if fit.threshold is not None and name in fit.precision:
            axes.plot([fit.coverage[name]], [1.0 - fit.precision[name]], "o", color=line.get_color(), markersize=4)
    axes.axhline(1.0 - target, color="grey", linestyle="--", label=f"target risk {1.0 - target:.2f}")
    chosen = "none reaches the target" if fit.threshold is None else f"threshold {fit.threshold:.3f} (dots)"
    axes.set_title(f"{attribute}: risk-coverage on validation per condition; {chosen}", fontsize="medium")
    axes.set_xlabel("coverage (share answered confidently)")
    axes.set_ylabel("risk (share of confident answers wrong)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, max(0.1, min(1.0, 4.0 * (1.0 - target))))
    axes.legend(loc="upper left", fontsize="x-small", ncol=2)
    figure.tight_layout()
    return figure
