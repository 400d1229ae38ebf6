"""Online accuracy of the served version, per region, from the label store, held between reads.

Recomputed from every label (``feedback.accuracy``) at most every ``REVIEW_REFRESH_SECONDS``,
and at the next read after this process stored a label; the Prometheus gauges are set each
time, so a scrape shows the numbers of the last computation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from feedback.accuracy import online_accuracy, region_summary
from feedback.items import LabelRow
from serving.learning.metrics import LearningMetrics


class OnlineAccuracy:
    """Per-region accuracy blocks of one version, recomputed when stale.

    Args:
        metrics: where the gauges live.
        max_age: seconds a computation is served before the next read recomputes it.
    """

    def __init__(self, metrics: LearningMetrics, max_age: float) -> None:
        self.metrics = metrics
        self.max_age = max_age
        self._computed_at = float("-inf")
        self._invalidated_at = float("-inf")
        self._version: str | None = None
        self._regions: dict[str, dict] = {}
        self._series: set[tuple[str, str]] = set()

    def stale(self, version: str | None) -> bool:
        """Whether the blocks are of another version, too old, or older than a label stored here."""
        computed = self._computed_at
        return (
            version != self._version or self._invalidated_at >= computed or time.monotonic() - computed > self.max_age
        )

    def invalidate(self) -> None:
        """A label was stored: the next read recomputes (even one already reading the store)."""
        self._invalidated_at = time.monotonic()

    @property
    def regions(self) -> dict[str, dict]:
        """Region -> ``{"labelled", "accuracy", "low", "high", "basis"}`` of the last computation."""
        return self._regions

    def update(self, rows: Sequence[LabelRow], version: str | None, started: float) -> None:
        """Computes from ``rows`` (read at monotonic time ``started``) for ``version``, sets the gauges."""
        online = online_accuracy(rows)
        self._regions = region_summary(online, version) if version is not None else {}
        self._version = version
        self._computed_at = started
        self._set_gauges(online, version)

    def _set_gauges(self, online: Mapping[tuple[str, str, str], dict], version: str | None) -> None:
        series = {
            (region, attribute): (entry["accuracy"], entry["labelled"])
            for (of_version, region, attribute), entry in online.items()
            if of_version == version
        }
        for gone in self._series - set(series):
            self.metrics.online_accuracy.remove(*gone)
            self.metrics.online_labelled.remove(*gone)
        for (region, attribute), (accuracy, labelled) in series.items():
            self.metrics.online_accuracy.labels(region, attribute).set(accuracy)
            self.metrics.online_labelled.labels(region, attribute).set(labelled)
        self._series = set(series)
