"""Online accuracy as the monitoring run reports it: the serving version's, per region and over
all regions together, named as MLflow metrics, and compared with the version's test score.

The numbers come from ``feedback.accuracy`` (unbiased labels only, Wilson intervals); this
module picks the serving version's, pools the regions for the ``all`` line, and says which
regions dropped and which have enough reviewed labels to harvest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from feedback.accuracy import BASIS, accuracy_dropped, online_accuracy, wilson
from feedback.items import HarvestRow, LabelRow
from tasks.data.harvest import ready_regions
from tasks.monitoring.drift import ALL

TEST_ACCURACY = re.compile(r"test\.([^.]+)\.accuracy")  # the version tags registration writes
COUNTS = ("labelled", "correct", "feedback", "uniform_reviews")


@dataclass(frozen=True)
class OnlineAccuracy:
    """The serving version on live traffic, from the labels given so far.

    Attributes:
        regions: region (and ``all``) -> attribute -> ``accuracy``, ``low``, ``high`` (95% Wilson),
            ``labelled``, ``correct``, ``feedback``, ``uniform_reviews``.
        basis: which labels were scored (``feedback.accuracy.BASIS``).
        dropped: regions significantly below the version's test accuracy (``AccuracyDrop`` as dicts).
        ready: region -> reviewed labels not harvested yet, for regions with enough for a harvest.
    """

    regions: dict[str, dict[str, dict]] = field(default_factory=dict)
    basis: str = BASIS
    dropped: list[dict] = field(default_factory=list)
    ready: dict[str, int] = field(default_factory=dict)


def assess(
    labels: Iterable[LabelRow],
    harvestable: Iterable[HarvestRow],
    version: str,
    test_scores: Mapping[str, float],
    min_labels: int,
) -> OnlineAccuracy:
    """The serving version's online accuracy, its drops below ``test_scores`` (attribute -> test
    accuracy) and the regions with at least ``min_labels`` harvestable labels."""
    online = {key: entry for key, entry in online_accuracy(labels).items() if key[0] == str(version)}
    drops = accuracy_dropped(online, {str(version): dict(test_scores)})
    return OnlineAccuracy(by_region(online), BASIS, [asdict(d) for d in drops], ready_regions(harvestable, min_labels))


def by_region(online: Mapping[tuple[str, str, str], dict]) -> dict[str, dict[str, dict]]:
    """Region -> attribute -> numbers, for one version's entries of ``online_accuracy``, with
    ``all`` pooling every region's labels (its interval from the pooled counts)."""
    regions: dict[str, dict[str, dict]] = {}
    pooled: dict[str, dict[str, int]] = {}
    for (_, region, attribute), entry in sorted(online.items()):
        regions.setdefault(region, {})[attribute] = _numbers(entry)
        total = pooled.setdefault(attribute, dict.fromkeys(COUNTS, 0))
        for count in COUNTS:
            total[count] += entry[count]
    if pooled:
        regions[ALL] = {attribute: _numbers(total) for attribute, total in pooled.items()}
    return regions


def _numbers(counts: Mapping[str, int]) -> dict:
    low, high = wilson(counts["correct"], counts["labelled"])
    return {"accuracy": counts["correct"] / counts["labelled"], "low": low, "high": high} | {
        count: counts[count] for count in COUNTS
    }


def online_metrics(regions: Mapping[str, Mapping[str, Mapping]]) -> dict[str, float]:
    """MLflow metrics: ``online.<attribute>.accuracy`` over all regions, ``online.<region>.<attribute>.accuracy``
    per region, each with its ``.labelled`` count."""
    metrics: dict[str, float] = {}
    for region, attributes in regions.items():
        prefix = "online." if region == ALL else f"online.{region}."
        for attribute, numbers in attributes.items():
            metrics[f"{prefix}{attribute}.accuracy"] = float(numbers["accuracy"])
            metrics[f"{prefix}{attribute}.labelled"] = float(numbers["labelled"])
    return metrics


def accuracy_on_test(tags: Mapping[str, str]) -> dict[str, float]:
    """Attribute -> test accuracy, from a registered version's ``test.<attribute>.accuracy`` tags."""
    found = {}
    for name, value in tags.items():
        match = TEST_ACCURACY.fullmatch(name)
        if match:
            found[match.group(1)] = float(value)
    return found
