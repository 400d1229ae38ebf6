"""Metrics, reports and figures for fitted heads; one naming scheme for every candidate.

Metric names are ``<split>.<attribute>.<metric>`` and the attribute mean ``<split>.<metric>``,
so MLflow's compare view lines candidates up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, classification_report

SELECTION_METRICS = ("macro_f1", "accuracy", "log_loss", "ece")
LOWER_IS_BETTER = {"log_loss", "ece"}
T = TypeVar("T", float, np.ndarray)
SHIFT_METRIC_PREFIX = "shift."
SELECTIVE = "selective"  # ``<split>.selective.<attribute>.<metric>``: the decisions' precision and coverage
ECE_BINS = 10  # equal-width confidence bins of the expected calibration error
LOG_LOSS_FLOOR = 1e-15  # the probability a wrong-for-sure answer is costed at


def expected_calibration_error(proba: np.ndarray, y_true_index: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over confidence bins."""
    correct = (proba.argmax(axis=1) == y_true_index).astype(float)
    return float(_calibration_error(proba.max(axis=1), correct, np.ones((1, len(correct))), bins)[0])


def attribute_metrics(classes: np.ndarray, proba: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1, log loss and ECE for one attribute's probabilities."""
    everyone = np.ones((1, len(y_true)))
    return {name: float(weighted_metric(classes, proba, y_true, everyone, name)[0]) for name in SELECTION_METRICS}


def weighted_metric(
    classes: Sequence[str], proba: np.ndarray, y_true: Sequence[str], weights: np.ndarray, metric: str
) -> np.ndarray:
    """One attribute's metric (as reported, not negated) under each row of ``weights``.

    A weight row counts how often each image is drawn, so one matrix product scores every
    bootstrap resample of the gate at once; a row of ones is the plain metric on all images.

    Args:
        classes: the labels of the probability columns.
        proba: [N, C] probabilities.
        y_true: N true labels; one the head has no column for is always wrong.
        weights: [R, N] draw counts.
        metric: one of ``SELECTION_METRICS``.

    Returns:
        R values, one per weight row.
    """
    classes = np.asarray(classes).astype(str)
    y_true = np.asarray(y_true).astype(str)
    predicted = classes[proba.argmax(axis=1)]
    correct = (predicted == y_true).astype(float)
    drawn = weights.sum(axis=1)
    if metric == "accuracy":
        return weights @ correct / drawn
    if metric == "macro_f1":
        labels = np.unique(y_true)
        truth, guess = y_true[:, None] == labels[None, :], predicted[:, None] == labels[None, :]
        # One product gives every row's per-class counts: true positives, false positives, misses, support.
        counts = weights @ np.hstack([truth & guess, ~truth & guess, truth & ~guess, truth]).astype(float)
        tp, fp, fn, support = np.split(counts, 4, axis=1)
        denominator = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        present = support > 0  # a class no drawn image has does not count, as in scikit-learn's labels=
        return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    if metric == "log_loss":
        index = {label: i for i, label in enumerate(classes)}
        # An unseen label has probability 0: cost it as the clip floor rather than fail.
        p_true = np.array([proba[row, index[y]] if y in index else 0.0 for row, y in enumerate(y_true)])
        return weights @ -np.log(np.clip(p_true, LOG_LOSS_FLOOR, 1.0)) / drawn
    if metric == "ece":
        return _calibration_error(proba.max(axis=1), correct, weights, ECE_BINS)
    raise ValueError(f"unknown metric {metric!r}; choose from {list(SELECTION_METRICS)}")


def _calibration_error(confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """Per weight row: the drawn images' |accuracy - confidence| per confidence bin, weighted by
    the bin's share of them."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    gaps = [
        np.abs(weights @ (correct * in_bin) - weights @ (confidence * in_bin))
        for in_bin in ((confidence > low) & (confidence <= high) for low, high in zip(edges[:-1], edges[1:]))
    ]
    return np.sum(gaps, axis=0) / weights.sum(axis=1)


def evaluate_heads(
    heads: Mapping[str, object], X: np.ndarray, ys: Mapping[str, np.ndarray], split: str
) -> dict[str, float]:
    """Per-attribute metrics and their means, named ``<split>.<attribute>.<metric>``."""
    metrics: dict[str, float] = {}
    for attribute, head in heads.items():
        for name, value in attribute_metrics(head.classes_, head.predict_proba(X), ys[attribute]).items():
            metrics[f"{split}.{attribute}.{name}"] = value
    for name in SELECTION_METRICS:
        metrics[f"{split}.{name}"] = float(np.mean([metrics[f"{split}.{a}.{name}"] for a in heads]))
    return metrics


def shift_metrics(
    heads: Mapping[str, object], shifted: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]]
) -> dict[str, float]:
    """Metrics on each shift kind (``shift.<kind>.<attribute>.<metric>``), plus the worst kind's
    macro-F1 per attribute and overall (``shift.worst.<attribute>.macro_f1``, ``shift.worst.macro_f1``)."""
    metrics: dict[str, float] = {}
    for kind, (X, ys) in shifted.items():
        metrics |= evaluate_heads(heads, X, ys, f"{SHIFT_METRIC_PREFIX}{kind}")
    if shifted:
        for attribute in [*heads, None]:
            suffix = f"{attribute}.macro_f1" if attribute else "macro_f1"
            metrics[f"{SHIFT_METRIC_PREFIX}worst.{suffix}"] = min(
                metrics[f"{SHIFT_METRIC_PREFIX}{k}.{suffix}"] for k in shifted
            )
    return metrics


def worst_shift(metrics: Mapping[str, float]) -> tuple[str, float] | None:
    """The shift kind with the lowest attribute-mean macro-F1, and that score; None without shifts."""
    scores = {
        key.removeprefix(SHIFT_METRIC_PREFIX).removesuffix(".macro_f1"): value
        for key, value in metrics.items()
        if key.startswith(SHIFT_METRIC_PREFIX)
        and key.count(".") == 2
        and key.endswith(".macro_f1")
        and key != f"{SHIFT_METRIC_PREFIX}worst.macro_f1"
    }
    if not scores:
        return None
    kind = min(scores, key=scores.__getitem__)
    return kind, scores[kind]


def shift_table(test: Mapping[str, float], shifted: Mapping[str, float], attributes: list[str]) -> pd.DataFrame:
    """One row per condition (``clean``, then each kind): macro-F1 and ECE per attribute,
    each macro-F1's drop from clean, and, for heads with decision thresholds, the precision
    and coverage of the confident answers (nan where none was confident)."""
    kinds = sorted({key.split(".")[1] for key in shifted} - {"worst"})
    rows = [{"condition": "clean", **_condition_columns(test, "test", attributes)}]
    for kind in kinds:
        row: dict[str, object] = {
            "condition": kind,
            **_condition_columns(shifted, f"{SHIFT_METRIC_PREFIX}{kind}", attributes),
        }
        for a in attributes:
            row[f"{a}.drop"] = test[f"test.{a}.macro_f1"] - row[f"{a}.macro_f1"]
        rows.append(row)
    return pd.DataFrame(rows)


def _condition_columns(metrics: Mapping[str, float], prefix: str, attributes: list[str]) -> dict[str, float]:
    columns = {f"{a}.{m}": metrics[f"{prefix}.{a}.{m}"] for a in attributes for m in ("macro_f1", "ece")}
    for a in attributes:
        if f"{prefix}.{SELECTIVE}.{a}.coverage" in metrics:
            for m in ("precision", "coverage"):
                columns[f"{a}.confident_{m}"] = metrics.get(f"{prefix}.{SELECTIVE}.{a}.{m}", float("nan"))
    return columns


def class_report(head, X: np.ndarray, y: np.ndarray) -> dict:
    """scikit-learn's per-class precision/recall/F1/support as a dict."""
    predicted = np.asarray(head.classes_)[head.predict_proba(X).argmax(axis=1)]
    return classification_report(y, predicted, output_dict=True, zero_division=0)


def confusion_figure(head, X: np.ndarray, y: np.ndarray, title: str) -> Figure:
    """A confusion-matrix figure, built without pyplot so no global backend is touched."""
    predicted = np.asarray(head.classes_)[head.predict_proba(X).argmax(axis=1)]
    labels = sorted(set(map(str, head.classes_)) | set(map(str, y)))
    figure = Figure(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)))
    axes = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(y, predicted, labels=labels, ax=axes, colorbar=False, xticks_rotation=45)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def score(metrics: Mapping[str, float], split: str, metric: str) -> float:
    """The selection score of ``<split>.<metric>`` (``as_score``)."""
    return as_score(metric, metrics[f"{split}.{metric}"])


def as_score(metric: str, value: T) -> T:
    """A metric's value (or array of values) as a selection score: higher is better, so error
    metrics are negated."""
    return -value if metric in LOWER_IS_BETTER else value


@dataclass(frozen=True)
class CandidateResult:
    """One trained candidate as the flow sees it: small, picklable, paths not arrays."""

    name: str
    run_id: str
    heads_path: str
    params: dict
    metrics: dict[str, float] = field(default_factory=dict)
    decisions_path: str | None = None  # the heads' decision policy (JSON), when fitted
    budget_cut: str = ""  # what the time budget cut (search points, refit rows); "" when nothing


@dataclass(frozen=True)
class CandidateFailure:
    name: str
    error: str

    @classmethod
    def from_error(cls, name: str, error: BaseException) -> CandidateFailure:
        """The error's type and its last message line (scikit-learn puts the cause last)."""
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return cls(name, f"{type(error).__name__}: {lines[-1] if lines else ''}"[:500])


def leaderboard(results: list[CandidateResult], metric: str) -> pd.DataFrame:
    """Candidates best first by the validation metric; ties go to lower latency."""
    rows = [
        {
            "rank": 0,
            "candidate": r.name,
            f"val.{metric}": r.metrics[f"val.{metric}"],
            "val.macro_f1": r.metrics["val.macro_f1"],
            "val.accuracy": r.metrics["val.accuracy"],
            "val.log_loss": r.metrics["val.log_loss"],
            "val.ece": r.metrics["val.ece"],
            **_coverage_columns(r.metrics),
            # Shown, never ranked on: the shifted images are the test split's.
            **_worst_shift_columns(r.metrics),
            "fit_seconds": r.metrics["fit_seconds"],
            "stopped_early": r.budget_cut,
            "predict_ms_per_image": r.metrics["predict_ms_per_image"],
            "model_bytes": int(r.metrics["model_bytes"]),
            "run_id": r.run_id,
            "_score": round(score(r.metrics, "val", metric), 6),
        }
        for r in results
    ]
    board = (
        pd.DataFrame(rows)
        .sort_values(["_score", "predict_ms_per_image"], ascending=[False, True])
        .drop(columns="_score")
    )
    board["rank"] = range(1, len(board) + 1)
    return board.reset_index(drop=True)


def coverage_at_target(metrics: Mapping[str, float], split: str) -> float | None:
    """The share of ``split``'s answers that are confident, averaged over attributes
    (``<split>.selective.<attribute>.coverage``); None for heads without decision thresholds."""
    prefix = f"{split}.{SELECTIVE}."
    values = [v for k, v in metrics.items() if k.startswith(prefix) and k.endswith(".coverage") and k.count(".") == 3]
    return float(np.mean(values)) if values else None


def _coverage_columns(metrics: Mapping[str, float]) -> dict[str, float]:
    coverage = coverage_at_target(metrics, "val")
    return {} if coverage is None else {"val.coverage_at_target": coverage}


def _worst_shift_columns(metrics: Mapping[str, float]) -> dict[str, object]:
    worst = worst_shift(metrics)
    return {} if worst is None else {"worst_shift": worst[0], "worst_shift.macro_f1": worst[1]}
