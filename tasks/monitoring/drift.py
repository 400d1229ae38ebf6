"""Drift of prediction records against a version's reference sample, with scipy's tests.

For the whole traffic and for each region with enough records, four aspects are compared
with the reference (the version's validation split, in the same record format):

- ``label.<attribute>``: chi-square test of homogeneity of the two label count vectors;
  score = Jensen-Shannon distance (base 2, 0..1) of the two label distributions.
- ``confidence.<attribute>``: two-sample Kolmogorov-Smirnov on the top-class probability;
  score = the KS statistic (0..1).
- ``embedding``: KS per projected embedding column; score = share of columns that drift.
- ``tone``: KS per saturation/value histogram bin; score = share of bins that drift.

A label or confidence check drifts when its p-value is below ``p_value`` *and* its score
reaches ``min_effect``: the p-value keeps small windows from raising noise, the effect size
keeps large windows from flagging differences too small to matter. ``embedding`` and ``tone``
drift when the share of their drifting columns reaches ``feature_share``.

The tests are scipy's own: Evidently does not import under pandas 3 (``docs/monitoring.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

ALL = "all"
COLUMN_GROUPS = {"embedding": ("features", "f"), "tone": ("tone", "t")}  # check -> (record field, column prefix)


@dataclass(frozen=True)
class Thresholds:
    """When a difference counts as drift.

    Attributes:
        p_value: significance level of each test (default 0.001: a region runs 2 tests per
            attribute plus the feature test each window, so false alarms stay rare).
        min_effect: smallest score (JS distance, KS statistic) that counts, however small p is.
        feature_share: share of the columns of ``embedding`` (or of ``tone``) that must drift.
        min_records: fewest records a region needs to be examined.
    """

    p_value: float = 0.001
    min_effect: float = 0.1
    feature_share: float = 0.3
    min_records: int = 30


@dataclass(frozen=True)
class Check:
    """One aspect compared with the reference."""

    name: str
    score: float
    p_value: float
    drift: bool


@dataclass(frozen=True)
class RegionDrift:
    """What one region's (or the whole traffic's) records look like against the reference."""

    region: str
    records: int
    checks: list[Check] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return any(check.drift for check in self.checks)

    @property
    def drifted(self) -> list[str]:
        return [check.name for check in self.checks if check.drift]

    def as_dict(self) -> dict:
        return {
            "drift": self.drift,
            "records": self.records,
            "drifted": self.drifted,
            "scores": {c.name: round(c.score, 4) for c in self.checks},
            "p_values": {c.name: float(f"{c.p_value:.3g}") for c in self.checks},
        }


def records_frame(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per record: region, version, projection, ``label.*``, ``confidence.*``, ``f00``.., ``t0``.."""
    rows = []
    for record in records:
        row = {"region": record["region"], "version": str(record["version"]), "projection": record["projection"]}
        for attribute, result in record["predictions"].items():
            row[f"label.{attribute}"] = result["label"]
            row[f"confidence.{attribute}"] = float(result["probability"])
        for field_name, prefix in COLUMN_GROUPS.values():
            row.update({f"{prefix}{i:02d}": float(v) for i, v in enumerate(record.get(field_name, ()))})
        rows.append(row)
    return pd.DataFrame(rows)


def compare(reference: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds, region: str = ALL) -> RegionDrift:
    """Every check of ``current`` against ``reference`` (both from ``records_frame``)."""
    checks: list[Check] = []
    for column in sorted(c for c in reference.columns if c.startswith("label.")):
        checks.append(label_check(reference[column], current[column], thresholds, column))
    for column in sorted(c for c in reference.columns if c.startswith("confidence.")):
        checks.append(numeric_check(reference[column], current[column], thresholds, column))
    if _same_projection(reference, current):
        for name, (_, prefix) in COLUMN_GROUPS.items():
            columns = _columns(reference, prefix)
            if columns and set(columns) <= set(current.columns):
                checks.append(columns_check(reference[columns], current[columns], thresholds, name))
    return RegionDrift(region, len(current), checks)


def detect(
    reference: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds
) -> tuple[dict[str, RegionDrift], dict[str, int]]:
    """Checks the whole traffic and each region with at least ``min_records`` records.

    Returns:
        Region (``all`` first) -> its result, and region -> record count for the regions
        left out for having too few records.
    """
    results: dict[str, RegionDrift] = {}
    too_few: dict[str, int] = {}
    groups = (
        [(ALL, current)] + sorted(current.groupby("region"), key=lambda item: item[0])
        if len(current)
        else [(ALL, current)]
    )
    for region, frame in groups:
        if len(frame) < thresholds.min_records:
            too_few[str(region)] = len(frame)
            continue
        results[str(region)] = compare(reference, frame, thresholds, str(region))
    return results, too_few


def label_check(reference: pd.Series, current: pd.Series, thresholds: Thresholds, name: str) -> Check:
    labels = sorted(set(reference.dropna()) | set(current.dropna()))
    table = np.array([[int((series == label).sum()) for label in labels] for series in (reference, current)])
    if len(labels) < 2:
        return Check(name, 0.0, 1.0, False)
    p_value = float(chi2_contingency(table).pvalue)
    score = float(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2))
    score = 0.0 if math.isnan(score) else score
    return Check(name, score, p_value, p_value < thresholds.p_value and score >= thresholds.min_effect)


def numeric_check(reference: pd.Series, current: pd.Series, thresholds: Thresholds, name: str) -> Check:
    result = ks_2samp(reference.to_numpy(float), current.to_numpy(float))
    score, p_value = float(result.statistic), float(result.pvalue)
    return Check(name, score, p_value, p_value < thresholds.p_value and score >= thresholds.min_effect)


def columns_check(reference: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds, name: str) -> Check:
    """Share of the columns whose KS test drifts; p-value: the smallest column p-value."""
    result = ks_2samp(reference.to_numpy(float), current.to_numpy(float), axis=0)
    drifting = (result.pvalue < thresholds.p_value) & (result.statistic >= thresholds.min_effect)
    share = float(drifting.mean())
    return Check(name, share, float(result.pvalue.min()), share >= thresholds.feature_share)


def _columns(frame: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in frame.columns if c.startswith(prefix) and c[len(prefix) :].isdigit()]


def _same_projection(reference: pd.DataFrame, current: pd.DataFrame) -> bool:
    return set(current["projection"].unique()) <= set(reference["projection"].unique())
