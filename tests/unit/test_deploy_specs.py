"""Deployments have one definition, prefect.yaml; `vehicles deploy` reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.deploy import load_specs, project_dir

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_specs_are_read_from_prefect_yaml():
    specs = {spec.name: spec for spec in load_specs(REPO / "prefect.yaml")}

    assert set(specs) == {
        "train",
        "retrain-nightly",
        "monitor-drift-hourly",
        "shadow-report-hourly",
        "harvest-labels-daily",
    }
    assert specs["train"].schedules == []
    [nightly] = specs["retrain-nightly"].schedules
    assert (nightly.cron, nightly.timezone) == ("0 2 * * *", "UTC")
    for spec in specs.values():
        assert spec.description
        assert (REPO / spec.entrypoint.split(":")[0]).is_file()
    [on_drift] = specs["retrain-nightly"].triggers
    assert on_drift.expect == {"vehicle.drift.detected"} and on_drift.parameters["trigger"] == "drift"


def test_labels_are_harvested_daily_before_the_retrain_and_when_a_region_has_enough():
    specs = {spec.name: spec for spec in load_specs(REPO / "prefect.yaml")}
    harvest = specs["harvest-labels-daily"]

    assert harvest.entrypoint == "flows/harvest.py:harvest_labels"
    [daily] = harvest.schedules
    assert (daily.cron, daily.timezone) == ("0 1 * * *", "UTC")
    [nightly] = specs["retrain-nightly"].schedules
    assert int(daily.cron.split()[1]) < int(nightly.cron.split()[1]), "labels go in before the nightly retrain"
    [on_labels] = harvest.triggers
    assert on_labels.expect == {"vehicle.labels.ready"}
    assert on_labels.match.root == {"prefect.resource.id": "vehicle.monitoring.*"}
    assert harvest.parameters == {}, "no root: the worker's PIPELINE_TRAINING_DATA, the retrain's, decides"


def test_the_shadow_report_runs_hourly_and_leaves_promotion_to_the_workers_policy():
    specs = {spec.name: spec for spec in load_specs(REPO / "prefect.yaml")}
    shadow = specs["shadow-report-hourly"]

    assert shadow.entrypoint == "flows/shadow.py:report_shadow"
    [hourly] = shadow.schedules
    assert (hourly.cron, hourly.timezone) == ("30 * * * *", "UTC")
    [drift] = specs["monitor-drift-hourly"].schedules
    assert hourly.cron.split()[0] != drift.cron.split()[0], "not at the same minute as the drift monitor"
    assert shadow.parameters == {}, "no auto_promote: the worker's SHADOW_AUTO_PROMOTE decides"


def test_a_changed_prefect_yaml_changes_what_is_deployed(tmp_path: Path):
    text = (REPO / "prefect.yaml").read_text().replace('cron: "0 2 * * *"', 'cron: "30 4 * * 1"')
    text = text.replace("      trigger: schedule\n", "      trigger: schedule\n      seed: 7\n")
    (tmp_path / "prefect.yaml").write_text(text)

    nightly = {spec.name: spec for spec in load_specs(tmp_path / "prefect.yaml")}["retrain-nightly"]

    assert nightly.schedules[0].cron == "30 4 * * 1"
    assert nightly.parameters == {"trigger": "schedule", "seed": 7}


def test_project_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("VEHICLES_PROJECT_DIR", raising=False)
    assert project_dir() == REPO
    monkeypatch.setenv("VEHICLES_PROJECT_DIR", str(tmp_path))
    assert project_dir() == tmp_path.resolve()
