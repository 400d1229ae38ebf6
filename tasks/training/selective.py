"""Selective classification: per attribute, the score above which answers are trusted.

A head's calibrated score is its largest class probability. For each attribute the threshold
is the lowest score at which the answers at or above it reach the target precision, fitted on
the validation images with their greyscale and shifted copies (never on test). Colour on
greyscale rows is left out of a colour attribute's fit: those answers are ``undetermined``
whatever their score (``vehicle_model.decisions``).

Small samples: a threshold counts as reaching the target only when the one-sided
Clopper-Pearson lower bound of its precision (``CONFIDENCE``) does. The bound is exact for a
binomial, and it grows with the number of answers, so a threshold that keeps a handful of
lucky answers is never chosen: with every answer right, a 0.98 target at 95% needs at least
149 answers (0.05 ** (1 / 149) > 0.98). Where no threshold reaches the bound (too few
validation images, or a head that is never that good) the threshold is None and the
attribute is never answered confidently: an honest "uncertain" rather than a guessed cut.
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

CONFIDENCE = 0.95  # of the lower bound on each threshold's precision


@dataclass(frozen=True)
class ThresholdFit:
    """One attribute's threshold and the risk-coverage curve it was read from.

    Attributes:
        threshold: the lowest score answered confidently; None when no threshold reaches the target.
        precision: the observed precision of the answers at or above it (nan without a threshold).
        coverage: their share of all answers (0 without a threshold).
        scores: the candidate thresholds, highest first (the distinct scores).
        coverages: the share of answers at or above each.
        risks: 1 - the observed precision of those answers.
        lower_bounds: the precision's lower bound at ``CONFIDENCE`` for each.
    """

    threshold: float | None
    precision: float
    coverage: float
    scores: np.ndarray
    coverages: np.ndarray
    risks: np.ndarray
    lower_bounds: np.ndarray


def fit_threshold(
    scores: np.ndarray, correct: np.ndarray, target: float, confidence: float = CONFIDENCE
) -> ThresholdFit:
    """The lowest score whose answers at or above it have a precision bound of at least ``target``.

    Args:
        scores: N calibrated scores.
        correct: N booleans, whether each answer's label is right.
        target: the precision to reach.
        confidence: the level of the one-sided lower bound.
    """
    order = np.argsort(-scores, kind="stable")
    ranked, right = scores[order], correct[order].astype(float)
    # Answers at or above each distinct score: ties go in or out together.
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True] if len(ranked) else np.zeros(0, dtype=bool)
    answered = np.arange(1, len(ranked) + 1)[last_of_tie]
    hits = np.cumsum(right)[last_of_tie]
    lower = clopper_pearson_lower(hits, answered, confidence)
    fit = dict(
        scores=ranked[last_of_tie],
        coverages=answered / max(len(ranked), 1),
        risks=1.0 - hits / np.maximum(answered, 1),
        lower_bounds=lower,
    )
    reached = np.flatnonzero(lower >= target)
    if not len(reached):
        return ThresholdFit(threshold=None, precision=float("nan"), coverage=0.0, **fit)
    at = reached[-1]  # the lowest score: the most answers
    return ThresholdFit(
        threshold=float(fit["scores"][at]),
        precision=float(1.0 - fit["risks"][at]),
        coverage=float(fit["coverages"][at]),
        **fit,
    )


def clopper_pearson_lower(hits: np.ndarray, n: np.ndarray, confidence: float = CONFIDENCE) -> np.ndarray:
    """The exact one-sided lower bound of a binomial proportion (0 when there are no hits)."""
    hits, n = np.asarray(hits, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(1.0 - confidence, hits, n - hits + 1.0)
    return np.where(hits > 0, np.nan_to_num(bound), 0.0)


def fit_policy(
    heads: Mapping[str, object],
    X: np.ndarray,
    ys: Mapping[str, np.ndarray],
    target: float,
    confidence: float = CONFIDENCE,
) -> tuple[DecisionPolicy, dict[str, ThresholdFit]]:
    """Each attribute's threshold on rows of featurizer output (validation and its copies).

    Returns:
        The policy to ship with the heads, and each attribute's fit (for its curve).
    """
    colours = colour_attributes(heads)
    greyscale = is_greyscale(X)
    fits: dict[str, ThresholdFit] = {}
    for attribute, head in heads.items():
        proba = head.predict_proba(X)
        keep = ~greyscale if attribute in colours else np.ones(len(X), dtype=bool)
        correct = np.asarray(head.classes_).astype(str)[proba.argmax(axis=1)] == np.asarray(ys[attribute]).astype(str)
        fits[attribute] = fit_threshold(proba.max(axis=1)[keep], correct[keep], target, confidence)
    policy = DecisionPolicy(
        thresholds={a: f.threshold for a, f in fits.items()},
        target_precision=target,
        colour_attributes=colours,
        coverage={a: f.coverage for a, f in fits.items()},
    )
    return policy, fits


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
    """Risk (1 - precision) against coverage as the threshold falls, the target risk, and the
    point chosen; built without pyplot so no global backend is touched."""
    figure = Figure(figsize=(5.0, 3.6))
    axes = figure.subplots()
    axes.plot(fit.coverages, fit.risks, label="observed risk")
    axes.plot(fit.coverages, 1.0 - fit.lower_bounds, linestyle=":", label=f"risk bound ({CONFIDENCE:.0%})")
    axes.axhline(1.0 - target, color="grey", linestyle="--", label=f"target risk {1.0 - target:.2f}")
    if fit.threshold is not None:
        axes.plot([fit.coverage], [1.0 - fit.precision], "o", color="black", label=f"threshold {fit.threshold:.3f}")
    axes.set_xlabel("coverage (share answered confidently)")
    axes.set_ylabel("risk (share of confident answers wrong)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, max(0.1, min(1.0, 2.5 * (1.0 - target))))
    axes.set_title(f"{attribute}: risk-coverage (validation + shifted copies)")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure
