"""The drift run's renderings: one table for the markdown artifact and ``vehicles monitor``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import cli.main
from tasks.monitoring.report import DRIFT_COLUMNS, drift_rows, html_report, markdown_report
from tasks.monitoring.summary import DriftSummary, TrackedRun

pytestmark = pytest.mark.unit


def _summary() -> DriftSummary:
    def region(drifted: list[str], records: int) -> dict:
        scores = {"label.vehicle_type": 0.61 if drifted else 0.05, "embedding": 1.0 if drifted else 0.0}
        return {
            "drift": bool(drifted),
            "records": records,
            "drifted": drifted,
            "scores": scores,
            "p_values": dict.fromkeys(scores, 0.5),
        }

    return DriftSummary(
        model="vehicle-classifier",
        version="3",
        window_start="2025-01-01T00:00:00+00:00",
        window_end="2025-01-01T01:00:00+00:00",
        records=125,
        compared=125,
        regions={"all": region([], 120), "north": region([], 60), "south": region(["embedding"], 60)},
        too_few={"west": 5},
        thresholds={"p_value": 0.001, "min_effect": 0.1, "feature_share": 0.3, "min_records": 30},
        mlflow_run_id="abc123",
        drifted_regions=["south"],
    )


def test_the_markdown_table_is_the_drift_rows():
    markdown = markdown_report(_summary())
    assert "| " + " | ".join(DRIFT_COLUMNS) + " |" in markdown
    assert "| north | 60 | no | - | label.vehicle_type 0.05, embedding 0.00 |" in markdown
    assert "| south | 60 | **yes** | embedding | label.vehicle_type 0.61, embedding 1.00 |" in markdown
    assert "Too few records to judge: west (5)" in markdown
    assert "MLflow run" not in markdown, "no run, no link"


def test_the_markdown_links_the_run_in_its_experiment():
    run = TrackedRun("drift-elsewhere", "abc123", "http://mlflow.example/#/experiments/7/runs/abc123")
    markdown = markdown_report(_summary(), run)
    assert "MLflow run [`abc123`](http://mlflow.example/#/experiments/7/runs/abc123)" in markdown
    assert "(experiment `drift-elsewhere`)" in markdown and "vehicle-monitoring" not in markdown


def test_the_cli_prints_the_same_rows(monkeypatch):
    console = Console(width=200, record=True)
    monkeypatch.setattr(cli.main, "console", console)
    cli.main._print_drift(_summary())
    printed = [" ".join(line.strip("│ ").split()) for line in console.export_text().splitlines()]
    for row in drift_rows(_summary()):
        assert " ".join(" │ ".join(row).split()) in printed, row


def test_the_html_report_escapes_and_lists_every_check():
    summary = _summary()
    summary.model = "<model>"
    page = html_report(summary, [], [])
    assert "&lt;model&gt;" in page and "<model>" not in page
    assert page.count("<td>embedding</td>") == 3


def test_the_renderers_import_no_mlflow_prefect_or_redis():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tasks.monitoring.report, tasks.monitoring.summary, tasks.monitoring.drift;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'prefect', 'redis'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    ).stdout
    assert loaded.strip() == "[]"
