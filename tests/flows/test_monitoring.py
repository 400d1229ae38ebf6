"""The drift monitor on the Prefect harness: the trained v1 with its reference sample (a copy
of the ``trained_v1`` registry), records written straight to a real Redis stream under a
throwaway key prefix."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import mlflow
import pytest
from flow_support import MODEL, events, latest_artifact
from mlflow import MlflowClient
from redis import Redis
from typer.testing import CliRunner

from cli.main import app
from flows.monitoring import monitor_drift
from tasks.data.features import load_split
from tasks.monitoring.log_reader import checkpoint_key
from tasks.monitoring.reference import REFERENCE_TAG, load_reference
from vehicle_model.records import PROJECTION_DIM, RECORD_FIELD, TONE_DIM, drift_status_key, encode, log_key

pytestmark = pytest.mark.flows

DRIFT = "vehicle.drift.detected"


@pytest.fixture
def redis_prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Redis, str]]:
    redis = Redis.from_url(redis_url)
    prefix = f"test-monitor-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    try:
        yield redis, prefix
    finally:
        keys = list(redis.scan_iter(f"{prefix}:*"))
        if keys:
            redis.delete(*keys)
        redis.close()


def _write(redis: Redis, prefix: str, records: list[dict]) -> None:
    for record in records:
        redis.xadd(log_key(prefix), {RECORD_FIELD: encode(record)})


def _as_traffic(reference: list[dict], region: str, n: int, seed: int) -> list[dict]:
    """In-distribution traffic: records drawn from the reference, stamped as served now."""
    rng = random.Random(seed)
    return [{**rng.choice(reference), "region": region, "time": time.time()} for _ in range(n)]


def _shifted(record: dict, reference: list[dict]) -> dict:
    """What a broken camera sends: one label, features far from the reference, and a confidence
    below any in the reference (half its lowest: low for whichever model v1 is)."""
    low = min(p["probability"] for r in reference for p in r["predictions"].values()) / 2
    predictions = {
        a: {"label": "bus" if a == "vehicle_type" else p["label"], "probability": low}
        for a, p in record["predictions"].items()
    }
    return {**record, "predictions": predictions, "features": [v + 5.0 for v in record["features"]]}


def _flow_run_id(mlflow_run_id: str) -> str:
    return MlflowClient().get_run(mlflow_run_id).data.tags["prefect.flow_run_id"]


def test_reference_sample_then_only_the_shifted_region_drifts(trained_v1_copy, redis_prefix):
    redis, prefix = redis_prefix
    trained = trained_v1_copy.summary

    client = MlflowClient()
    version = client.get_model_version(MODEL, trained.version)
    assert version.tags[REFERENCE_TAG].startswith(f"runs:/{trained.parent_run_id}/")
    reference = load_reference(client, MODEL, trained.version)
    [features] = trained_v1_copy.prepared.rglob("*.npz")
    X_val, _ = load_split(features, "validation", ["vehicle_type", "color"])
    assert len(reference) == len(X_val), "one reference record per validation image"
    assert {r["version"] for r in reference} == {trained.version}
    assert all(len(r["features"]) == PROJECTION_DIM and len(r["tone"]) == TONE_DIM for r in reference)
    assert all(set(r["predictions"]) == {"vehicle_type", "color"} for r in reference)

    started = datetime.now(UTC)
    _write(redis, prefix, _as_traffic(reference, "north", 60, seed=1))
    _write(redis, prefix, [_shifted(r, reference) for r in _as_traffic(reference, "south", 60, seed=2)])
    _write(redis, prefix, _as_traffic(reference, "west", 5, seed=3))

    summary = monitor_drift()

    assert summary.records == summary.compared == 125
    assert summary.regions["north"]["drift"] is False
    assert summary.regions["south"]["drift"] is True
    assert set(summary.regions["south"]["drifted"]) >= {"label.vehicle_type", "confidence.vehicle_type", "embedding"}
    assert summary.too_few == {"west": 5}
    assert summary.drifted_regions == ["south"]
    [event] = events(DRIFT, since=started)
    assert event.payload["regions"] == ["south"] and event.payload["version"] == trained.version
    assert event.payload["scores"]["south"]["embedding"] == 1.0

    run = client.get_run(summary.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "vehicle-monitoring"
    assert run.data.metrics["south.drift"] == 1.0 and run.data.metrics["north.drift"] == 0.0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"drift_report.html", "drift.json"}
    assert "<h1>Drift report" in mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/drift_report.html")
    markdown = latest_artifact("drift-report", _flow_run_id(summary.mlflow_run_id))
    assert "drift in **south**" in markdown and "| north | 60 | no |" in markdown

    statuses = {k.decode(): json.loads(v) for k, v in redis.hgetall(drift_status_key(prefix)).items()}
    assert statuses["south"]["drift"] is True and statuses["north"]["drift"] is False
    assert statuses["south"]["version"] == trained.version
    checkpoint = redis.get(checkpoint_key(prefix))
    assert checkpoint is not None

    again = monitor_drift()
    assert again.records == 0 and not again.drift, "the checkpoint makes the next run read only new records"

    windowed = monitor_drift(window_minutes=10)
    assert windowed.records == 125 and windowed.drifted_regions == ["south"]
    assert redis.get(checkpoint_key(prefix)) == checkpoint, "a windowed run leaves the checkpoint alone"

    cli = CliRunner().invoke(app, ["monitor", "--window-minutes", "10", "--json"])
    assert cli.exit_code == 0, cli.output
    printed = json.loads(cli.stdout)
    assert {r: (v["drift"], v["records"]) for r, v in printed["regions"].items() if r != "all"} == {
        "north": (False, 60),
        "south": (True, 60),
    }
    assert printed["regions"]["all"]["records"] == 125 and printed["drifted_regions"] == ["south"]
    assert printed["regions"]["south"]["scores"]["embedding"] == 1.0 and printed["too_few"] == {"west": 5}


def test_the_configured_experiment_and_mlflow_ui_are_used(trained_v1_copy, redis_prefix, monkeypatch):
    redis, prefix = redis_prefix
    monkeypatch.setenv("MONITOR_EXPERIMENT", "drift-elsewhere")
    monkeypatch.setenv("MLFLOW_UI_URL", "http://mlflow.example:5000/")
    client = MlflowClient()
    _write(redis, prefix, _as_traffic(load_reference(client, MODEL, "1"), "north", 40, seed=4))

    summary = monitor_drift()

    run = client.get_run(summary.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "drift-elsewhere"
    assert client.get_experiment_by_name("vehicle-monitoring") is None
    link = f"http://mlflow.example:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    report = latest_artifact("drift-report", _flow_run_id(run.info.run_id))
    assert f"MLflow run [`{run.info.run_id}`]({link}) (experiment `drift-elsewhere`)" in report


def test_monitor_cli_without_redis_says_what_to_set(pipeline_env, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(app, ["monitor"])
    assert result.exit_code == 1
    assert "REDIS_URL is not set" in result.output and "Traceback" not in result.output
