"""The training flow end to end on a tiny real dataset, real MLflow store, real Prefect harness."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.worker import EventsWorker

from flows.training import train_pipeline
from tasks import candidates as candidate_registry
from tasks.candidates import CANDIDATES
from tasks.registry import CHALLENGER, CHAMPION, PREVIOUS, rollback, version_for_alias

pytestmark = pytest.mark.flows

MODEL = "vehicle-classifier"
FAST = ["logistic_regression", "knn"]


def _train(data: Path, **kwargs):
    kwargs.setdefault("time_budget_seconds", 5)
    return train_pipeline(data=str(data), **kwargs)


def _child_runs(parent_run_id: str) -> pd.DataFrame:
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return runs


def _heads_folders(pipeline_env: Path) -> list[Path]:
    return list((pipeline_env / "prepared").rglob("heads-*"))


def _artifact(key: str) -> dict | str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(artifacts, key=lambda a: a.created)[-1].data


def test_six_candidates_tracked_registered_and_promoted(pipeline_env, tiny_dataset):
    summary = _train(tiny_dataset)

    children = _child_runs(summary.parent_run_id)
    assert sorted(children["tags.candidate"]) == sorted(CANDIDATES)
    assert set(children["status"]) == {"FINISHED"}
    named = ["val.macro_f1", "val.vehicle_type.macro_f1", "val.color.macro_f1", "val.accuracy", "val.log_loss",
             "val.ece", "fit_seconds", "predict_ms_per_image", "model_bytes"]
    for metric in named:
        assert children[f"metrics.{metric}"].notna().all(), metric
    client = MlflowClient()
    some_run = children.iloc[0]["run_id"]
    files = {a.path for folder in ("confusion_matrix", "class_report") for a in client.list_artifacts(some_run, folder)}
    assert files == {"confusion_matrix/vehicle_type.png", "confusion_matrix/color.png",
                     "class_report/vehicle_type.json", "class_report/color.json"}
    assert any(key.startswith("vehicle_type.") for key in client.get_run(some_run).data.params)

    parent = client.get_run(summary.parent_run_id)
    assert {"prefect.flow_run_id", "git_commit", "dataset.fingerprint", "dataset.path"} <= set(parent.data.tags)
    assert parent.inputs.dataset_inputs, "the dataset is logged as a run input"
    assert "test.macro_f1" in parent.data.metrics

    champion = version_for_alias(client, MODEL, CHAMPION)
    assert champion is not None and str(champion.version) == summary.version == "1"
    assert champion.tags["candidate"] == summary.winner
    assert champion.tags["fingerprint"] == parent.data.tags["dataset.fingerprint"]
    assert champion.tags["promotion.decision"] == "promoted"
    assert float(champion.tags["test.macro_f1"]) == pytest.approx(summary.test_metrics["test.macro_f1"], abs=1e-6)

    board = _artifact("leaderboard")
    rows = json.loads(board) if isinstance(board, str) else board
    assert [row["candidate"] for row in rows][: len(CANDIDATES)] == [r["candidate"] for r in summary.leaderboard]

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    image = tiny_dataset / pd.read_csv(tiny_dataset / "labels.csv")["image"][0]
    [record] = model.predict(pd.DataFrame({"image": [image.read_bytes()]}))
    assert set(record) == {"vehicle_type", "color"}
    assert sum(record["color"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def _promotion_events(since: datetime, wait_for: int, timeout: float = 30.0) -> list:
    """Promotion events stored since ``since``, waiting (bounded) until ``wait_for`` arrived."""
    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout
    query = EventFilter(event=EventNameFilter(name=["vehicle.model.promoted"]), occurred=EventOccurredFilter(since=since))
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(query, limit=50)  # the server rejects the client's default of 100
        if len(page.events) >= wait_for or time.monotonic() > deadline:
            return page.events
        time.sleep(0.5)


def test_gate_keeps_champion_unless_better_by_margin(pipeline_env, tiny_dataset):
    started = datetime.now(timezone.utc)
    first = _train(tiny_dataset, candidates=FAST)
    assert first.promoted

    same = _train(tiny_dataset, candidates=FAST)
    client = MlflowClient()
    assert not same.promoted, "an equal model must not be promoted"
    assert same.champion_score == pytest.approx(first.test_metrics["test.macro_f1"], abs=1e-9)
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == first.version
    assert str(version_for_alias(client, MODEL, CHALLENGER).version) == same.version
    assert client.get_model_version(MODEL, same.version).tags["promotion.decision"] == "rejected"

    weak = _train(tiny_dataset, candidates=["knn"])
    assert weak.winner == "knn" and not weak.promoted
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == first.version
    assert str(version_for_alias(client, MODEL, CHALLENGER).version) == weak.version

    forced = _train(tiny_dataset, candidates=["knn"], min_improvement=-1.0)
    assert forced.promoted
    promoted = sorted((e.payload["version"], e.payload["previous_champion"]) for e in _promotion_events(started, 2))
    assert promoted == sorted([(first.version, None), (forced.version, first.version)]), "one event per promotion only"
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == forced.version
    assert str(version_for_alias(client, MODEL, PREVIOUS).version) == first.version

    assert rollback(client, MODEL) == (first.version, forced.version)
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == first.version
    assert _heads_folders(pipeline_env) == [], "fitted heads are scratch: removed after each run"


def _broken(seed: int):
    raise RuntimeError("injected failure")


def test_failing_candidate_is_isolated(pipeline_env, tiny_dataset, monkeypatch):
    monkeypatch.setitem(candidate_registry.CANDIDATES, "broken", _broken)
    summary = _train(tiny_dataset, candidates=["logistic_regression", "knn", "broken"])

    assert set(summary.failed) == {"broken"} and "injected failure" in summary.failed["broken"]
    assert summary.winner in FAST
    children = _child_runs(summary.parent_run_id)
    broken = children[children["tags.candidate"] == "broken"]
    assert len(broken) == 2, "one failed child run per attempt (1 retry)"
    assert set(broken["status"]) == {"FAILED"}
    assert broken["tags.error"].str.contains("injected failure").all()
    assert "broken" in _artifact("promotion-decision")


def test_flow_fails_when_most_candidates_fail(pipeline_env, tiny_dataset, monkeypatch):
    monkeypatch.setitem(candidate_registry.CANDIDATES, "broken", _broken)
    monkeypatch.setitem(candidate_registry.CANDIDATES, "broken2", _broken)
    with pytest.raises(RuntimeError, match="only 1 of 3 candidates succeeded"):
        _train(tiny_dataset, candidates=["knn", "broken", "broken2"])
    assert version_for_alias(MlflowClient(), MODEL, CHAMPION) is None
    assert _heads_folders(pipeline_env) == [], "a failed run removes its fitted heads too"


def test_invalid_data_fails_before_training(pipeline_env, tiny_dataset, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    frame["image"] = [str(tiny_dataset / p) for p in frame["image"]]
    frame.loc[0, "image"] = str(tmp_path / "missing.png")
    frame.to_csv(bad / "labels.csv", index=False)

    with pytest.raises(Exception, match="validation problems"):
        _train(bad)
    assert "file_exists" in _artifact("data-validation")
    assert mlflow.search_runs(search_all_experiments=True).empty
    assert MlflowClient().search_registered_models() == []


def test_unknown_candidate_is_rejected(pipeline_env, tiny_dataset):
    with pytest.raises(ValueError, match="unknown candidates"):
        _train(tiny_dataset, candidates=["nope"])
