"""The training flow end to end on a tiny real dataset, real MLflow store, real Prefect harness.

The suite's one six-candidate run is the ``trained_v1`` template; the retraining rules run
as one story on a copy of it, and each rule is also checked at its own step in
``test_promotion_steps.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import mlflow
import pandas as pd
import pytest
from flow_support import MODEL, events, heads_folders, latest_artifact, rows_of, train
from mlflow import MlflowClient

from flows.training import TrainingSummary
from tasks.data.prepare_steps import PreparedData
from tasks.data.shifts import SHIFTS
from tasks.registry.retrain import SkippedRun
from tasks.registry.versions import CHALLENGER, CHAMPION, PREVIOUS, rollback, version_for_alias
from tasks.tracking import parent_run
from tasks.training import candidates as candidate_registry
from tasks.training.candidates import CANDIDATES
from tasks.training.vote import VOTE
from vehicle_model.featurizer import Featurizer

pytestmark = pytest.mark.flows

FAST = ["logistic_regression", "knn"]
PROMOTED = "vehicle.model.promoted"


def _child_runs(parent_run_id: str) -> pd.DataFrame:
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def _flow_run_id(summary: TrainingSummary) -> str:
    return MlflowClient().get_run(summary.parent_run_id).data.tags["prefect.flow_run_id"]


def _alias(client: MlflowClient, alias: str) -> str | None:
    found = version_for_alias(client, MODEL, alias)
    return None if found is None else str(found.version)


def test_six_candidates_tracked_registered_and_promoted(trained_v1_copy, tiny_dataset):
    summary = trained_v1_copy.summary

    children = _child_runs(summary.parent_run_id)
    assert sorted(children["tags.candidate"]) == sorted([*CANDIDATES, VOTE]), "the six and their vote"
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
    fitted = children[children["tags.candidate"] != VOTE]  # the vote fits nothing of its own
    augmented = fitted["params.augmented_rows"].astype(int)
    assert augmented.nunique() == 1
    for attribute in ("vehicle_type", "color"):  # fitted on the greyscale validation images
        assert (fitted[f"params.{attribute}.greyscale_temperature"].astype(float) > 0).all(), attribute

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
    assert champion.tags["featurizer"] == parent.data.tags["featurizer"] == Featurizer(precision="auto").version
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
    ranked = len(summary.leaderboard)
    assert [row["candidate"] for row in rows][:ranked] == [r["candidate"] for r in summary.leaderboard]
    assert all(row["worst_shift"] in SHIFTS and 0 <= row["worst_shift.macro_f1"] <= 1 for row in rows[:ranked])

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    image = tiny_dataset / pd.read_csv(tiny_dataset / "labels.csv")["image"][0]
    [record] = model.predict(pd.DataFrame({"image": [image.read_bytes()]}))
    assert set(record) == {"vehicle_type", "color"}
    assert sum(record["color"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)

    [event] = events(PROMOTED, since=trained_v1_copy.started, until=trained_v1_copy.finished)
    assert (event.payload["version"], event.payload["previous_champion"]) == ("1", None)
    assert heads_folders(trained_v1_copy.prepared) == [], "fitted heads are scratch: removed after each run"


def test_retraining_skips_judged_data_and_promotes_only_through_the_gate(
    trained_v1_copy, tiny_dataset, tmp_path, monkeypatch
):
    """v1 -> unchanged data skipped -> a rejected challenger -> its data skipped too -> a forced
    downgrade promoted -> rolled back: the flow wires the rules of test_promotion_steps.py."""
    v1, client = trained_v1_copy.summary, MlflowClient()
    started = datetime.now(UTC)
    runs_before = len(mlflow.search_runs(search_all_experiments=True))
    monkeypatch.setenv("PIPELINE_TRAINING_DATA", str(tiny_dataset))  # runs without `data` read it

    skipped = train(candidates=["logistic_regression"], trigger="drift", drift_regions=["eu-west"])

    assert isinstance(skipped, SkippedRun) and (skipped.alias, skipped.version) == (CHAMPION, "1")
    assert skipped.line.startswith(f"no new data since champion v1, trained on {tiny_dataset} (84 images")
    artifact = latest_artifact("training-skipped")
    assert skipped.line in artifact and "label regions eu-west" in artifact
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before, "no MLflow run for a skipped run"
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")] == ["1"]

    subset = rows_of(tiny_dataset, slice(0, 56), tmp_path / "subset")  # new data: a snapshot v1 was not trained on
    monkeypatch.setenv("PIPELINE_GATE_MIN_IMAGES", "1000")  # too few images to decide on: rejected
    challenger = train(subset, candidates=["logistic_regression"])

    assert isinstance(challenger, TrainingSummary) and not challenger.promoted
    assert "at least 1000 needed" in challenger.reason and challenger.champion_version == "1"
    assert (_alias(client, CHAMPION), _alias(client, CHALLENGER)) == ("1", challenger.version)
    tags = client.get_model_version(MODEL, challenger.version).tags
    assert (tags["promotion.decision"], tags["gate.champion_version"]) == ("rejected", "1")
    test_images = len(mlflow.artifacts.load_dict(f"runs:/{challenger.parent_run_id}/training_images.json")["test"])
    assert tags["gate.images"] == str(test_images), "a subset's test images stay test images: v1 never saw them"
    decision = latest_artifact("promotion-decision", _flow_run_id(challenger))
    assert f"v{challenger.version} (logistic_regression) kept as **challenger**" in decision

    rerun = train(subset, candidates=["logistic_regression"])

    assert isinstance(rerun, SkippedRun) and (rerun.alias, rerun.version) == (CHALLENGER, challenger.version)
    assert "it was not promoted (only" in rerun.line and "champion is v1" in rerun.line

    monkeypatch.setenv("PIPELINE_GATE_MIN_IMAGES", "5")
    monkeypatch.setenv("PIPELINE_GATE_MIN_LOWER_BOUND", "-2")  # accept any interval: a deliberate downgrade
    forced = train(candidates=["knn"], min_improvement=-1.0, force=True)

    assert isinstance(forced, TrainingSummary) and forced.winner == "knn" and forced.promoted
    assert forced.champion_version == "1"
    assert forced.champion_score == pytest.approx(v1.test_metrics["test.macro_f1"], abs=1e-9), (
        "unchanged data: v1 scored on its whole test split"
    )
    assert client.get_model_version(MODEL, forced.version).tags["dataset.path"] == str(tiny_dataset)
    metrics = client.get_run(forced.parent_run_id).data.metrics
    assert "test.macro_f1" in metrics and not [m for m in metrics if m.startswith("shift.")], (
        "PIPELINE_SHIFTED_EVALUATION=false: no shifted test images were scored"
    )
    promoted = [(e.payload["version"], e.payload["previous_champion"]) for e in events(PROMOTED, since=started)]
    assert promoted == [(forced.version, "1")], "one event per promotion; none for a skip or a rejection"
    assert (_alias(client, CHAMPION), _alias(client, PREVIOUS)) == (forced.version, "1")

    assert rollback(client, MODEL) == ("1", forced.version)
    assert (_alias(client, CHAMPION), _alias(client, PREVIOUS)) == ("1", forced.version)
    assert heads_folders(trained_v1_copy.prepared) == [], "fitted heads are scratch: removed after each run"


def _broken(seed: int):
    raise RuntimeError("injected failure")


def test_failing_candidate_is_isolated(pipeline_env, tiny_dataset, monkeypatch):
    monkeypatch.setitem(candidate_registry.CANDIDATES, "broken", _broken)
    summary = train(tiny_dataset, candidates=["logistic_regression", "knn", "broken"])

    assert set(summary.failed) == {"broken"} and "injected failure" in summary.failed["broken"]
    assert summary.winner in [*FAST, VOTE], "two succeeded: their vote is a candidate too"
    children = _child_runs(summary.parent_run_id)
    broken = children[children["tags.candidate"] == "broken"]
    assert len(broken) == 2, "one failed child run per attempt (1 retry)"
    assert set(broken["status"]) == {"FAILED"}
    assert broken["tags.error"].str.contains("injected failure").all()
    assert "- broken: RuntimeError: injected failure" in latest_artifact("promotion-decision", _flow_run_id(summary))


def test_flow_fails_when_most_candidates_fail(pipeline_env, tiny_dataset, monkeypatch):
    monkeypatch.setitem(candidate_registry.CANDIDATES, "broken", _broken)
    monkeypatch.setitem(candidate_registry.CANDIDATES, "broken2", _broken)
    with pytest.raises(RuntimeError, match="only 1 of 3 candidates succeeded"):
        train(tiny_dataset, candidates=["knn", "broken", "broken2"])
    assert version_for_alias(MlflowClient(), MODEL, CHAMPION) is None
    assert heads_folders(pipeline_env / "prepared") == [], "a failed run removes its fitted heads too"


def test_invalid_data_fails_before_training(pipeline_env, tiny_dataset, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    frame["image"] = [str(tiny_dataset / p) for p in frame["image"]]
    frame.loc[0, "image"] = str(tmp_path / "missing.png")
    frame.to_csv(bad / "labels.csv", index=False)

    with pytest.raises(Exception, match="validation problems"):
        train(bad)
    assert "file_exists" in latest_artifact("data-validation")
    assert mlflow.search_runs(search_all_experiments=True).empty
    assert MlflowClient().search_registered_models() == []


def test_unknown_candidate_is_rejected(pipeline_env, tiny_dataset):
    with pytest.raises(ValueError, match="unknown candidates"):
        train(tiny_dataset, candidates=["nope"])


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
