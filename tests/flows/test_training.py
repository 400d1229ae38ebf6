"""The training flow end to end on a tiny real dataset, real MLflow store, real Prefect harness."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from flow_support import events, heads_folders, latest_artifact
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.worker import EventsWorker

from flows.training import TrainingSummary, train_pipeline
from tasks.data.prepare_steps import PreparedData
from tasks.data.shifts import SHIFTS
from tasks.registry.retrain import SkippedRun
from tasks.registry.versions import CHALLENGER, CHAMPION, PREVIOUS, rollback, version_for_alias
from tasks.tracking import parent_run
from tasks.training import candidates as candidate_registry
from tasks.training.candidates import CANDIDATES
from vehicle_model import featurizer as featurizer_module
from vehicle_model.featurizer import Featurizer

pytestmark = pytest.mark.flows

MODEL = "vehicle-classifier"
FAST = ["logistic_regression", "knn"]
PROMOTED = "vehicle.model.promoted"


def _train(data: Path, **kwargs):
    kwargs.setdefault("time_budget_seconds", 5)
    return train_pipeline(data=str(data), **kwargs)


def _train_default(**kwargs):
    """The flow as a schedule starts it: no ``data`` parameter."""
    return train_pipeline(time_budget_seconds=5, **kwargs)


def _child_runs(parent_run_id: str) -> pd.DataFrame:
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return runs


def _flow_run_id(summary: TrainingSummary) -> str:
    return MlflowClient().get_run(summary.parent_run_id).data.tags["prefect.flow_run_id"]


def _heads_folders(pipeline_env: Path) -> list[Path]:
    return list((pipeline_env / "prepared").rglob("heads-*"))


def _artifact(key: str) -> dict | str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(artifacts, key=lambda a: a.created)[-1].data


def test_six_candidates_tracked_registered_and_promoted(trained_v1_copy, tiny_dataset):
    summary = trained_v1_copy.summary

    children = _child_runs(summary.parent_run_id)
    assert sorted(children["tags.candidate"]) == sorted(CANDIDATES)
    assert set(children["status"]) == {"FINISHED"}
    named = [
        "val.macro_f1",
        "val.vehicle_type.macro_f1",
        "val.color.macro_f1",
        "val.accuracy",
        "val.log_loss",
        "val.ece",
        "fit_seconds",
        "predict_ms_per_image",
        "model_bytes",
    ]
    for metric in named:
        assert children[f"metrics.{metric}"].notna().all(), metric
    client = MlflowClient()
    some_run = children.iloc[0]["run_id"]
    files = {a.path for folder in ("confusion_matrix", "class_report") for a in client.list_artifacts(some_run, folder)}
    assert files == {
        "confusion_matrix/vehicle_type.png",
        "confusion_matrix/color.png",
        "class_report/vehicle_type.json",
        "class_report/color.json",
    }
    assert any(key.startswith("vehicle_type.") for key in client.get_run(some_run).data.params)
    augmented = children["params.augmented_rows"].astype(int)
    assert augmented.nunique() == 1
    for attribute in ("vehicle_type", "color"):  # fitted on the greyscale validation images
        assert (children[f"params.{attribute}.greyscale_temperature"].astype(float) > 0).all(), attribute

    parent = client.get_run(summary.parent_run_id)
    assert {"prefect.flow_run_id", "git_commit", "dataset.fingerprint", "dataset.path"} <= set(parent.data.tags)
    assert parent.inputs.dataset_inputs, "the dataset is logged as a run input"
    assert "test.macro_f1" in parent.data.metrics
    for kind in SHIFTS:
        for attribute in ("vehicle_type", "color"):
            for metric in ("macro_f1", "ece"):
                assert f"shift.{kind}.{attribute}.{metric}" in parent.data.metrics, (kind, attribute, metric)
    assert parent.data.metrics["shift.worst.color.macro_f1"] == min(
        parent.data.metrics[f"shift.{kind}.color.macro_f1"] for kind in SHIFTS
    )
    shift_rows = client.load_table(parent.info.experiment_id, "shifts.json", run_ids=[summary.parent_run_id])
    assert list(shift_rows["condition"]) == ["clean", *sorted(SHIFTS)]

    champion = version_for_alias(client, MODEL, CHAMPION)
    assert champion is not None and str(champion.version) == summary.version == "1"
    assert champion.tags["candidate"] == summary.winner
    assert champion.tags["fingerprint"] == parent.data.tags["dataset.fingerprint"]
    assert champion.tags["featurizer"] == parent.data.tags["featurizer"] == Featurizer().version
    assert champion.tags["dataset.path"] == str(tiny_dataset)
    recorded = mlflow.artifacts.load_dict(f"runs:/{summary.parent_run_id}/training_images.json")
    manifest = pd.read_csv(trained_v1_copy.prepared / champion.tags["fingerprint"][:16] / "split-seed0.csv")
    for split in ("train", "validation", "test"):
        assert recorded[split] == sorted(set(manifest.loc[manifest["split"] == split, "sha256"])), split
    assert augmented.iloc[0] == 2 * (manifest["split"] == "train").sum(), (
        "two shifted copies per training image by default"
    )
    assert champion.tags["promotion.decision"] == "promoted"
    assert float(champion.tags["test.macro_f1"]) == pytest.approx(summary.test_metrics["test.macro_f1"], abs=1e-6)

    board = latest_artifact("leaderboard", _flow_run_id(summary))
    rows = json.loads(board) if isinstance(board, str) else board
    assert [row["candidate"] for row in rows][: len(CANDIDATES)] == [r["candidate"] for r in summary.leaderboard]
    assert all(
        row["worst_shift"] in SHIFTS and 0 <= row["worst_shift.macro_f1"] <= 1 for row in rows[: len(CANDIDATES)]
    )

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    image = tiny_dataset / pd.read_csv(tiny_dataset / "labels.csv")["image"][0]
    [record] = model.predict(pd.DataFrame({"image": [image.read_bytes()]}))
    assert set(record) == {"vehicle_type", "color"}
    assert sum(record["color"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)

    [event] = events(PROMOTED, since=trained_v1_copy.started, until=trained_v1_copy.finished)
    assert (event.payload["version"], event.payload["previous_champion"]) == ("1", None)
    assert heads_folders(trained_v1_copy.prepared) == [], "fitted heads are scratch: removed after each run"


def _promotion_events(since: datetime, wait_for: int, timeout: float = 30.0) -> list:
    """Promotion events stored since ``since``, waiting (bounded) until ``wait_for`` arrived."""
    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout
    query = EventFilter(
        event=EventNameFilter(name=["vehicle.model.promoted"]), occurred=EventOccurredFilter(since=since)
    )
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(query, limit=50)  # the server rejects the client's default of 100
        if len(page.events) >= wait_for or time.monotonic() > deadline:
            return page.events
        time.sleep(0.5)


def test_gate_keeps_champion_unless_better_by_margin(pipeline_env, tiny_dataset, monkeypatch):
    started = datetime.now(UTC)
    first = _train(tiny_dataset, candidates=FAST)
    assert first.promoted

    same = _train(tiny_dataset, candidates=FAST, force=True)
    client = MlflowClient()
    assert not same.promoted, "an equal model must not be promoted"
    assert same.champion_score == pytest.approx(first.test_metrics["test.macro_f1"], abs=1e-9)
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == first.version
    assert str(version_for_alias(client, MODEL, CHALLENGER).version) == same.version
    tags = client.get_model_version(MODEL, same.version).tags
    assert tags["promotion.decision"] == "rejected"
    test_images = len(mlflow.artifacts.load_dict(f"runs:/{first.parent_run_id}/training_images.json")["test"])
    assert tags["gate.images"] == str(test_images), "same data: the whole test split is unseen by both"
    assert (float(tags["gate.gain"]), float(tags["gate.ci_low"]), float(tags["gate.ci_high"])) == (0.0, 0.0, 0.0)

    weak = _train(tiny_dataset, candidates=["knn"], force=True)
    assert weak.winner == "knn" and not weak.promoted
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == first.version
    assert str(version_for_alias(client, MODEL, CHALLENGER).version) == weak.version

    monkeypatch.setenv("PIPELINE_GATE_MIN_LOWER_BOUND", "-2")  # accept any interval: a deliberate downgrade
    forced = _train(tiny_dataset, candidates=["knn"], min_improvement=-1.0, force=True)
    assert forced.promoted
    promoted = sorted((e.payload["version"], e.payload["previous_champion"]) for e in _promotion_events(started, 2))
    assert promoted == sorted([(first.version, None), (forced.version, first.version)]), "one event per promotion only"
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == forced.version
    assert str(version_for_alias(client, MODEL, PREVIOUS).version) == first.version

    assert rollback(client, MODEL) == (first.version, forced.version)
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == first.version
    assert _heads_folders(pipeline_env) == [], "fitted heads are scratch: removed after each run"


def test_unchanged_data_trains_nothing_unless_forced(pipeline_env, tiny_dataset):
    first = _train(tiny_dataset, candidates=["logistic_regression"])
    runs_before = len(mlflow.search_runs(search_all_experiments=True))

    skipped = _train(tiny_dataset, candidates=["logistic_regression"], trigger="drift", drift_regions=["eu-west"])

    assert isinstance(skipped, SkippedRun)
    assert skipped.line.startswith(f"no new data since champion v{first.version}, trained on {tiny_dataset} (84 images")
    artifact = _artifact("training-skipped")
    assert skipped.line in artifact and "label regions eu-west" in artifact
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before, "no MLflow run for a skipped run"
    assert [str(v.version) for v in MlflowClient().search_model_versions(f"name='{MODEL}'")] == [first.version]

    forced = _train(tiny_dataset, candidates=["logistic_regression"], force=True)
    assert isinstance(forced, TrainingSummary) and forced.version == "2"


def test_a_rejected_challenger_on_the_same_data_also_stops_a_rerun(pipeline_env, tiny_dataset, tmp_path, monkeypatch):
    subset = tmp_path / "subset"
    subset.mkdir()
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    frame.assign(image=[str(tiny_dataset / p) for p in frame["image"]]).iloc[:56].to_csv(
        subset / "labels.csv", index=False
    )
    _train(subset, candidates=["logistic_regression"])
    monkeypatch.setenv("PIPELINE_GATE_MIN_IMAGES", "1000")  # too few images to decide on: rejected
    challenger = _train(tiny_dataset, candidates=["logistic_regression"])
    assert not challenger.promoted and "at least 1000 needed" in challenger.reason

    skipped = _train(tiny_dataset, candidates=["logistic_regression"])

    assert isinstance(skipped, SkippedRun) and (skipped.alias, skipped.version) == ("challenger", challenger.version)
    assert "it was not promoted (only" in skipped.line and "champion is v1" in skipped.line


def test_training_data_setting_is_used_when_no_data_is_given(pipeline_env, tiny_dataset, monkeypatch):
    monkeypatch.setenv("PIPELINE_TRAINING_DATA", str(tiny_dataset))

    summary = _train_default(candidates=["logistic_regression"])

    assert MlflowClient().get_model_version(MODEL, summary.version).tags["dataset.path"] == str(tiny_dataset)


def test_a_featurizer_change_retrains_and_scores_the_champion_on_its_own_features(
    pipeline_env, tiny_dataset, monkeypatch
):
    first = _train(tiny_dataset, candidates=["logistic_regression"])
    monkeypatch.setattr(featurizer_module, "PREPROCESSING_VERSION", "changed-preprocessing-for-test")

    second = _train(tiny_dataset, candidates=["logistic_regression"])

    assert isinstance(second, TrainingSummary), "a new featurizer is something new to learn from"
    old_version = MlflowClient().get_model_version(MODEL, first.version).tags["featurizer"]
    new_version = MlflowClient().get_model_version(MODEL, second.version).tags["featurizer"]
    assert old_version != new_version and new_version.endswith("changed-preprocessing-for-test")
    # The champion's features came from the cache of its own featurizer version: the score it
    # had on this very test split when it was trained.
    assert second.champion_score == pytest.approx(first.test_metrics["test.macro_f1"], abs=1e-9)


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


def test_the_parent_run_logs_its_dataset_without_mlflows_ambiguous_source_warning(
    mlflow_store, tiny_dataset, tmp_path, monkeypatch, recwarn
):
    manifest = tmp_path / "split-seed0.csv"
    pd.read_csv(tiny_dataset / "labels.csv").assign(sha256="0", split="train").to_csv(manifest, index=False)
    monkeypatch.chdir(tiny_dataset.parent)  # a relative dataset path, as a user types it
    prepared = PreparedData(
        source=tiny_dataset.name,
        fingerprint="f" * 64,
        manifest=manifest,
        features=tmp_path / "features.npz",
        attributes=["vehicle_type", "color"],
        counts={"train": 84},
        featurizer_version="test-featurizer",
    )

    with parent_run("dataset-source", str(tmp_path / "artifacts"), "http://mlflow", "run", {}, prepared) as parent:
        pass

    assert [str(w.message) for w in recwarn if "interpreted in multiple ways" in str(w.message)] == []
    [logged] = MlflowClient().get_run(parent.run_id).inputs.dataset_inputs
    assert (logged.dataset.source_type, json.loads(logged.dataset.source)) == (
        "local",
        {"uri": tiny_dataset.resolve().as_uri()},
    )
