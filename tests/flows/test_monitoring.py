"""The drift monitor on the Prefect harness: a trained champion with its reference sample,
records written straight to a real Redis stream under a throwaway key prefix."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import mlflow
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.worker import EventsWorker
from redis import Redis
from typer.testing import CliRunner

from cli.main import app
from flows.monitoring import monitor_drift
from flows.training import train_pipeline
from tasks.data.features import load_split
from tasks.monitoring.log_reader import checkpoint_key
from tasks.monitoring.reference import REFERENCE_TAG, load_reference
from vehicle_model.records import PROJECTION_DIM, RECORD_FIELD, TONE_DIM, drift_status_key, encode, log_key

pytestmark = pytest.mark.flows

MODEL = "vehicle-classifier"


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


def _shifted(record: dict) -> dict:
    """What a broken camera sends: one label, low confidence, features far from the reference."""
    predictions = {
        a: {"label": "bus" if a == "vehicle_type" else p["label"], "probability": 0.35}
        for a, p in record["predictions"].items()
    }
    return {**record, "predictions": predictions, "features": [v + 5.0 for v in record["features"]]}


def _drift_events(since: datetime, timeout: float = 30.0) -> list:
    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout
    query = EventFilter(
        event=EventNameFilter(name=["vehicle.drift.detected"]), occurred=EventOccurredFilter(since=since)
    )
    while True:
        with get_client(sync_client=True) as client:
            events = client.read_events(query, limit=50).events
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def _artifact(key: str) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(artifacts, key=lambda a: a.created)[-1].data


def test_reference_sample_then_only_the_shifted_region_drifts(pipeline_env, tiny_dataset, redis_prefix):
    redis, prefix = redis_prefix
    trained = train_pipeline(data=str(tiny_dataset), candidates=["logistic_regression"], time_budget_seconds=5)

    client = MlflowClient()
    version = client.get_model_version(MODEL, trained.version)
    assert version.tags[REFERENCE_TAG].startswith(f"runs:/{trained.parent_run_id}/")
    reference = load_reference(client, MODEL, trained.version)
    [features] = pipeline_env.joinpath("prepared").rglob("*.npz")
    X_val, _ = load_split(features, "validation", ["vehicle_type", "color"])
    assert len(reference) == len(X_val), "one reference record per validation image"
    assert {r["version"] for r in reference} == {trained.version}
    assert all(len(r["features"]) == PROJECTION_DIM and len(r["tone"]) == TONE_DIM for r in reference)
    assert all(set(r["predictions"]) == {"vehicle_type", "color"} for r in reference)

    started = datetime.now(UTC)
    _write(redis, prefix, _as_traffic(reference, "north", 60, seed=1))
    _write(redis, prefix, [_shifted(r) for r in _as_traffic(reference, "south", 60, seed=2)])
    _write(redis, prefix, _as_traffic(reference, "west", 5, seed=3))

    summary = monitor_drift()

    assert summary.records == summary.compared == 125
    assert summary.regions["north"]["drift"] is False
    assert summary.regions["south"]["drift"] is True
    assert set(summary.regions["south"]["drifted"]) >= {"label.vehicle_type", "confidence.vehicle_type", "embedding"}
    assert summary.too_few == {"west": 5}
    assert summary.drifted_regions == ["south"]
    [event] = _drift_events(started)
    assert event.payload["regions"] == ["south"] and event.payload["version"] == trained.version
    assert event.payload["scores"]["south"]["embedding"] == 1.0

    run = client.get_run(summary.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "vehicle-monitoring"
    assert run.data.metrics["south.drift"] == 1.0 and run.data.metrics["north.drift"] == 0.0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"drift_report.html", "drift.json"}
    assert "<h1>Drift report" in mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/drift_report.html")
    markdown = _artifact("drift-report")
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


def test_the_configured_experiment_and_mlflow_ui_are_used(pipeline_env, tiny_dataset, redis_prefix, monkeypatch):
    redis, prefix = redis_prefix
    monkeypatch.setenv("MONITOR_EXPERIMENT", "drift-elsewhere")
    monkeypatch.setenv("MLFLOW_UI_URL", "http://mlflow.example:5000/")
    trained = train_pipeline(data=str(tiny_dataset), candidates=["logistic_regression"], time_budget_seconds=5)
    client = MlflowClient()
    _write(redis, prefix, _as_traffic(load_reference(client, MODEL, trained.version), "north", 40, seed=4))

    summary = monitor_drift()

    run = client.get_run(summary.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "drift-elsewhere"
    assert client.get_experiment_by_name("vehicle-monitoring") is None
    link = f"http://mlflow.example:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"MLflow run [`{run.info.run_id}`]({link}) (experiment `drift-elsewhere`)" in _artifact("drift-report")


def test_monitor_cli_without_redis_says_what_to_set(pipeline_env, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(app, ["monitor"])
    assert result.exit_code == 1
    assert "REDIS_URL is not set" in result.output and "Traceback" not in result.output
