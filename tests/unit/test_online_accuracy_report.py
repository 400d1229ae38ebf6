"""Online accuracy in the monitoring run: the serving version's numbers per region and pooled,
their MLflow names, the drop against the test score, and how the report and the CLI show them."""

from __future__ import annotations

import pytest
from rich.console import Console

import cli.main
from feedback.accuracy import BASIS, wilson
from feedback.items import HarvestRow, LabelRow
from tasks.monitoring.online import accuracy_on_test, assess, online_metrics
from tasks.monitoring.report import markdown_report, online_lines, online_rows
from tasks.monitoring.summary import DriftSummary

pytestmark = pytest.mark.unit


def label(i: int, region: str, given: str, predicted: str, *, version: str = "3", source: str = "feedback") -> LabelRow:
    return LabelRow(
        item_id=f"{region}-{version}-{source}-{i}",
        labels={"vehicle_type": given},
        source=source,
        labelled_by="acme",
        labelled_at=1000.0 + i,
        predicted={"vehicle_type": predicted, "color": "red"},
        predicted_at=900.0 + i,
        region=region,
        client="acme",
        model="vehicle-classifier",
        version=version,
        kept=False,
        uniform=False,
    )


def rows() -> list[LabelRow]:
    """v3: night 2 of 20 right, day 18 of 20 right; targeted reviews and v2's labels are not v3's score."""
    night = [label(i, "night", "car", "car" if i < 2 else "bus") for i in range(20)]
    day = [label(i, "day", "car", "car" if i < 18 else "bus") for i in range(20)]
    targeted = [label(i, "night", "car", "bus", source="review") for i in range(30)]
    older = [label(i, "night", "car", "car", version="2") for i in range(50)]
    return night + day + targeted + older


def harvestable(region: str, n: int) -> list[HarvestRow]:
    return [HarvestRow(f"{region}-h{i}", "0" * 64, {"vehicle_type": "car"}, region, "3", "review") for i in range(n)]


def test_the_serving_versions_accuracy_per_region_and_pooled_over_regions() -> None:
    online = assess(rows(), [], "3", {}, min_labels=50)

    assert set(online.regions) == {"night", "day", "all"}
    night = online.regions["night"]["vehicle_type"]
    assert (night["labelled"], night["correct"], night["accuracy"]) == (20, 2, 0.1)
    assert (night["low"], night["high"]) == wilson(2, 20)
    assert night["feedback"] == 20 and night["uniform_reviews"] == 0, "the 30 targeted reviews are left out"
    pooled = online.regions["all"]["vehicle_type"]
    assert (pooled["labelled"], pooled["correct"], pooled["accuracy"]) == (40, 20, 0.5)
    assert (pooled["low"], pooled["high"]) == wilson(20, 40), "the pooled interval comes from the pooled counts"
    assert "color" not in online.regions["night"], "only labelled attributes are scored"
    assert online.basis == BASIS and online.dropped == [] and online.ready == {}


def test_a_region_below_the_test_accuracy_is_dropped_and_a_region_with_enough_labels_is_ready() -> None:
    online = assess(rows(), harvestable("night", 5) + harvestable("day", 4), "3", {"vehicle_type": 0.9}, min_labels=5)

    [drop] = online.dropped
    assert (drop["region"], drop["attribute"], drop["version"], drop["labelled"]) == ("night", "vehicle_type", "3", 20)
    assert drop["high"] < drop["test_accuracy"] == 0.9
    assert online.ready == {"night": 5}, "day has 4 of the 5 a harvest needs"


def test_the_mlflow_metric_names() -> None:
    metrics = online_metrics(assess(rows(), [], "3", {}, min_labels=1).regions)

    assert metrics == {
        "online.vehicle_type.accuracy": 0.5,
        "online.vehicle_type.labelled": 40.0,
        "online.night.vehicle_type.accuracy": 0.1,
        "online.night.vehicle_type.labelled": 20.0,
        "online.day.vehicle_type.accuracy": 0.9,
        "online.day.vehicle_type.labelled": 20.0,
    }


def test_the_test_accuracy_is_read_from_the_version_tags() -> None:
    tags = {
        "test.vehicle_type.accuracy": "0.912345",
        "test.color.accuracy": "0.800000",
        "test.accuracy": "0.85",
        "test.vehicle_type.macro_f1": "0.9",
        "test.selective.color.accuracy": "0.99",
        "candidate": "svm",
    }
    assert accuracy_on_test(tags) == {"vehicle_type": 0.912345, "color": 0.8}


def summary_with_online() -> DriftSummary:
    online = assess(rows(), harvestable("night", 5), "3", {"vehicle_type": 0.9}, min_labels=5)
    return DriftSummary(
        model="vehicle-classifier",
        version="3",
        window_start="2025-01-01T00:00:00+00:00",
        window_end="2025-01-01T01:00:00+00:00",
        records=0,
        compared=0,
        regions={},
        too_few={},
        thresholds={"p_value": 0.001, "min_effect": 0.1, "feature_share": 0.3, "min_records": 30},
        online_accuracy=online.regions,
        online_basis=online.basis,
        accuracy_dropped=online.dropped,
        labels_ready=online.ready,
    )


def test_the_report_lists_all_first_marks_the_drop_and_names_the_basis() -> None:
    summary = summary_with_online()

    assert [row[:3] for row in online_rows(summary)] == [
        ("all", "vehicle_type", "40"),
        ("day", "vehicle_type", "20"),
        ("night", "vehicle_type", "20"),
    ]
    markdown = markdown_report(summary)
    assert "## Online accuracy" in markdown
    assert "| night | vehicle_type | 20 | 0.100 **dropped** | 0.028 to 0.301 |" in markdown
    assert "| day | vehicle_type | 20 | 0.900 | 0.699 to 0.972 |" in markdown
    assert f"Online accuracy counts {BASIS}." in markdown
    assert "night: vehicle_type accuracy 0.100 (at most 0.301) is below the test accuracy 0.900." in markdown
    assert "Reviewed labels ready to harvest: night (5)." in markdown


def test_without_labels_the_report_says_so() -> None:
    summary = summary_with_online()
    summary.online_accuracy, summary.accuracy_dropped, summary.labels_ready = {}, [], {}

    assert online_rows(summary) == []
    assert online_lines(summary) == ["No online accuracy: no labels for this version yet."]


def test_the_monitor_cli_prints_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=200, record=True)
    monkeypatch.setattr(cli.main, "console", console)
    summary = summary_with_online()

    cli.main._print_drift(summary)

    printed = [" ".join(line.strip("│ ").split()) for line in console.export_text().splitlines()]
    for row in online_rows(summary):
        assert " ".join(" │ ".join(row).split()) in printed, row
    assert any("is below the test accuracy 0.900" in line for line in printed)
