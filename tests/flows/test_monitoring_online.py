"""Online accuracy in the hourly monitoring run: labels in a real SQLite label store joined to the
trained v1 (a copy of the ``trained_v1`` registry), MLflow metrics on the monitoring run, the
``vehicle.accuracy.dropped`` and ``vehicle.labels.ready`` events, and ``vehicles monitor --json``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flow_support import MODEL, events, latest_artifact
from mlflow import MlflowClient
from redis import Redis
from typer.testing import CliRunner

from cli.main import app
from feedback.items import KeptItem, PredictionInfo
from feedback.store import LabelStore
from flows.monitoring import monitor_drift

pytestmark = pytest.mark.flows

DROPPED, READY = "vehicle.accuracy.dropped", "vehicle.labels.ready"


@pytest.fixture
def redis_prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty prediction log under a throwaway prefix: these runs read no records."""
    redis = Redis.from_url(redis_url)
    prefix = f"test-online-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    try:
        yield prefix
    finally:
        keys = list(redis.scan_iter(f"{prefix}:*"))
        if keys:
            redis.delete(*keys)
        redis.close()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabelStore]:
    url = f"sqlite:///{tmp_path}/review/labels.db"
    monkeypatch.setenv("LABELS_DATABASE_URL", url)
    monkeypatch.setenv("PIPELINE_HARVEST_MIN_LABELS", "3")
    labels = LabelStore(url)
    yield labels
    labels.close()


def feedback(store: LabelStore, version: str, region: str, n: int, right: int) -> None:
    """``n`` clients' reports on ``region``'s predictions (not kept), ``right`` of them agreeing."""
    for i in range(n):
        info = PredictionInfo(time.time(), region, "acme", MODEL, version, {"vehicle_type": "bus", "color": "red"})
        given = {"vehicle_type": "bus" if i < right else "van"}
        assert store.add_label(f"{region}-{i}", given, "feedback", client="acme", prediction=info) == "created"


def reviewed(store: LabelStore, version: str, region: str, n: int) -> None:
    """``n`` kept items of ``region`` (targeted: uncertain) that a reviewer confirmed: harvestable, not scored."""
    for i in range(n):
        prediction = {"vehicle_type": {"label": "bus", "probabilities": {"bus": 0.5, "van": 0.5}}}
        item = KeptItem.from_prediction(
            f"{region}-kept-{i}",
            prediction,
            time=time.time(),
            region=region,
            client="acme",
            model=MODEL,
            version=version,
            reasons=("uncertain",),
            image_sha=f"{i:064x}",
        )
        store.add_item(item)
        store.review(item.item_id, "confirm")


def test_online_accuracy_is_logged_and_a_drop_and_ready_labels_are_announced(
    trained_v1_copy, redis_prefix: str, store: LabelStore
) -> None:
    version = trained_v1_copy.summary.version
    client = MlflowClient()
    test_accuracy = float(client.get_model_version(MODEL, version).tags["test.vehicle_type.accuracy"])
    assert test_accuracy > 0.2, "the drop below needs a test score above night's interval"
    feedback(store, version, "night", 20, right=0)
    feedback(store, version, "day", 20, right=20)
    reviewed(store, version, "night", 3)
    reviewed(store, version, "day", 2)
    feedback(store, "0", "west", 20, right=0)  # another version's labels are not v1's score
    started = datetime.now(UTC)

    summary = monitor_drift()

    night, day, pooled = (summary.online_accuracy[r]["vehicle_type"] for r in ("night", "day", "all"))
    assert (night["labelled"], night["accuracy"], day["accuracy"]) == (20, 0.0, 1.0)
    assert (pooled["labelled"], pooled["accuracy"]) == (40, 0.5)
    assert "west" not in summary.online_accuracy and "uniform sample" in summary.online_basis
    run = client.get_run(summary.mlflow_run_id)
    assert run.data.metrics["online.vehicle_type.accuracy"] == 0.5
    assert run.data.metrics["online.vehicle_type.labelled"] == 40
    assert run.data.metrics["online.night.vehicle_type.accuracy"] == 0.0
    assert run.data.metrics["online.day.vehicle_type.labelled"] == 20
    [dropped] = events(DROPPED, since=started)
    assert dropped.resource.id == f"vehicle.monitoring.{MODEL}"
    assert dropped.payload["regions"] == ["night"] and dropped.payload["version"] == version
    [drop] = dropped.payload["drops"]
    assert drop["attribute"] == "vehicle_type" and drop["test_accuracy"] == test_accuracy
    [ready] = events(READY, since=started)
    assert ready.resource.id == f"vehicle.monitoring.{MODEL}", "the harvest's trigger matches vehicle.monitoring.*"
    assert ready.payload["labels"] == {"night": 3}, "day has 2 of the 3 PIPELINE_HARVEST_MIN_LABELS asks for"
    flow_run_id = run.data.tags["prefect.flow_run_id"]
    report = latest_artifact("drift-report", flow_run_id)
    assert "| night | vehicle_type | 20 | 0.000 **dropped** |" in report

    cli = CliRunner().invoke(app, ["monitor", "--json"])

    assert cli.exit_code == 0, cli.output
    printed = json.loads(cli.stdout)["online_accuracy"]
    assert printed["night"]["vehicle_type"]["labelled"] == 20 and printed["night"]["vehicle_type"]["high"] < 0.2
    assert set(printed["night"]["vehicle_type"]) >= {"accuracy", "low", "high", "labelled"}


def test_a_missing_label_store_is_no_labels_and_is_not_created(
    trained_v1_copy, redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "labels.db"
    monkeypatch.setenv("LABELS_DATABASE_URL", f"sqlite:///{missing}")
    started = datetime.now(UTC)

    summary = monitor_drift()

    assert summary.online_accuracy == {} and summary.accuracy_dropped == [] and summary.labels_ready == {}
    assert not missing.parent.exists()
    metrics = MlflowClient().get_run(summary.mlflow_run_id).data.metrics
    assert not any(name.startswith("online.") for name in metrics)
    assert events(READY, since=started, wait_for=1, timeout=3) == []
