"""One monitoring run's result: what was read, what was compared, what drifted, how accurate
the labels say the version is.

Plain data, so the report renderers and the CLI read it without MLflow, Prefect or Redis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tasks.monitoring.drift import ALL


@dataclass
class DriftSummary:
    """One monitoring run: what was read, what was compared, what drifted.

    Attributes:
        model: registered model name.
        version: the serving version (behind the alias) whose reference was used.
        window_start / window_end: ISO times of the records read.
        records: records read; ``compared`` of them came from ``version``.
        regions: region (``all`` for the whole traffic) -> drift, records, scores, p-values.
        too_few: regions left out for having fewer than ``min_records`` records.
        thresholds: the thresholds used.
        mlflow_run_id: the run in the monitoring experiment (``MONITOR_EXPERIMENT``).
        drifted_regions: the regions to act on (``drifted_regions``).
        online_accuracy: region (and ``all``) -> attribute -> the version's accuracy on labelled
            live traffic: ``accuracy``, ``low``, ``high`` (95% Wilson), ``labelled`` and counts.
        online_basis: which labels that accuracy counts.
        accuracy_dropped: where it is significantly below the version's test accuracy.
        labels_ready: region -> reviewed labels waiting for a harvest, where there are enough.
    """

    model: str
    version: str
    window_start: str
    window_end: str
    records: int
    compared: int
    regions: dict[str, dict]
    too_few: dict[str, int]
    thresholds: dict
    mlflow_run_id: str | None = None
    drifted_regions: list[str] = field(default_factory=list)
    online_accuracy: dict[str, dict[str, dict]] = field(default_factory=dict)
    online_basis: str = ""
    accuracy_dropped: list[dict] = field(default_factory=list)
    labels_ready: dict[str, int] = field(default_factory=dict)

    @property
    def drift(self) -> bool:
        return bool(self.drifted_regions)

    def as_dict(self) -> dict:
        return {**asdict(self), "drift": self.drift}


@dataclass(frozen=True)
class TrackedRun:
    """Where a drift run's scores and HTML report were logged.

    Attributes:
        experiment: the monitoring experiment's name.
        run_id: the MLflow run.
        url: the run's page in the MLflow UI.
    """

    experiment: str
    run_id: str
    url: str


def drifted_regions(regions: dict[str, dict]) -> list[str]:
    """Regions to act on: the drifting regions, or ``all`` when only the whole traffic drifts."""
    named = sorted(r for r, result in regions.items() if r != ALL and result["drift"])
    if named:
        return named
    return [ALL] if regions.get(ALL, {}).get("drift") else []
