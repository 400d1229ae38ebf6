"""Online accuracy: labels joined to predictions, per version, region and attribute, with intervals.

Only labels that are an unbiased sample of the traffic are scored: client feedback, and
reviews of items kept for the ``uniform`` reason. Reviews of items kept only because the answer
was uncertain or the region drifted are left out, since that sampling seeks out errors and
would make any model look worse than it is; they still train the next version. Client feedback
is as unbiased as the clients' choice of what to report, which this code cannot see: the
``feedback`` and ``uniform_reviews`` counts of each result let a reader weigh the two.

Intervals are Wilson score intervals (Wilson 1927), which keep their coverage for small counts
and near 0 or 1 where the normal approximation does not; a difference of two proportions uses
Newcombe's hybrid score interval built from the two Wilson intervals (Newcombe 1998, method 10).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from feedback.items import LabelRow

BASIS = "client feedback and reviews of the uniform sample; reviews of targeted samples are left out"
Z95 = 1.96
MIN_LABELLED = 10


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct / n``; (0, 1) when ``n`` is 0.

    Raises:
        ValueError: ``correct`` is not between 0 and ``n``.
    """
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n; got {correct} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(a: tuple[int, int], b: tuple[int, int], z: float = Z95) -> tuple[float, float]:
    """Newcombe's interval for ``p_a - p_b``, each given as ``(correct, n)``.

    Raises:
        ValueError: either proportion has no trials.
    """
    if a[1] == 0 or b[1] == 0:
        raise ValueError(f"each proportion needs at least one trial; got {a} and {b}")
    p_a, p_b = a[0] / a[1], b[0] / b[1]
    (low_a, high_a), (low_b, high_b) = wilson(*a, z=z), wilson(*b, z=z)
    difference = p_a - p_b
    return (
        difference - math.hypot(p_a - low_a, high_b - p_b),
        difference + math.hypot(high_a - p_a, p_b - low_b),
    )


def unbiased(row: LabelRow) -> bool:
    """Whether a label may be scored: client feedback, or a review of the uniform sample."""
    return row.source == "feedback" or row.uniform


def online_accuracy(rows: Iterable[LabelRow], z: float = Z95) -> dict[tuple[str, str, str], dict]:
    """Accuracy per ``(version, region, attribute)`` from the unbiased labels.

    Returns:
        Key -> ``{"labelled", "correct", "accuracy", "low", "high", "feedback", "uniform_reviews",
        "excluded", "basis"}``: ``excluded`` counts the labels left out as targeted reviews. Keys
        with no unbiased label are absent.
    """
    tallies: dict[tuple[str, str, str], dict[str, int]] = {}
    for row in rows:
        for attribute, label in row.labels.items():
            if attribute not in row.predicted:
                continue
            tally = tallies.setdefault(
                (row.version, row.region, attribute),
                {"labelled": 0, "correct": 0, "feedback": 0, "uniform_reviews": 0, "excluded": 0},
            )
            if not unbiased(row):
                tally["excluded"] += 1
                continue
            tally["labelled"] += 1
            tally["correct"] += label == row.predicted[attribute]
            tally["feedback" if row.source == "feedback" else "uniform_reviews"] += 1
    result = {}
    for key, tally in sorted(tallies.items()):
        if tally["labelled"]:
            low, high = wilson(tally["correct"], tally["labelled"], z)
            accuracy = tally["correct"] / tally["labelled"]
            result[key] = {**tally, "accuracy": accuracy, "low": low, "high": high, "basis": BASIS}
    return result


def region_summary(online: Mapping[tuple[str, str, str], dict], version: str) -> dict[str, dict]:
    """Per region, for one version: ``{"labelled": n, "accuracy": {attribute: x}, "low": {...},
    "high": {...}, "basis": ...}``, where ``labelled`` is the most labels any attribute has."""
    summary: dict[str, dict] = {}
    for (key_version, region, attribute), entry in online.items():
        if key_version != str(version):
            continue
        into = summary.setdefault(region, {"labelled": 0, "accuracy": {}, "low": {}, "high": {}, "basis": BASIS})
        into["labelled"] = max(into["labelled"], entry["labelled"])
        for field in ("accuracy", "low", "high"):
            into[field][attribute] = entry[field]
    return dict(sorted(summary.items()))


@dataclass(frozen=True)
class AccuracyDrop:
    """A region where a version answers significantly worse than its test score said it would.

    Attributes:
        version, region, attribute: where.
        accuracy, low, high: the online accuracy and its Wilson interval.
        labelled: how many unbiased labels it rests on.
        test_accuracy: the version's accuracy on its test split.
    """

    version: str
    region: str
    attribute: str
    accuracy: float
    low: float
    high: float
    labelled: int
    test_accuracy: float


def accuracy_dropped(
    online: Mapping[tuple[str, str, str], dict],
    test_scores: Mapping[str, Mapping[str, float]],
    *,
    min_labelled: int = MIN_LABELLED,
) -> list[AccuracyDrop]:
    """Where the interval's upper bound is below the test accuracy (significant at the level of
    the interval, one-sided 2.5% for 95%), from at least ``min_labelled`` labels, so that a
    handful of reports from one client cannot raise the alarm alone.

    Args:
        online: the result of ``online_accuracy``.
        test_scores: version -> attribute -> the version's test accuracy; others are skipped.
        min_labelled: fewest unbiased labels a drop may rest on.
    """
    drops = []
    for (version, region, attribute), entry in online.items():
        test = test_scores.get(version, {}).get(attribute)
        if test is not None and entry["labelled"] >= min_labelled and entry["high"] < test:
            drops.append(
                AccuracyDrop(
                    version, region, attribute, entry["accuracy"], entry["low"], entry["high"], entry["labelled"], test
                )
            )
    return drops
