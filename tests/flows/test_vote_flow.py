"""The vote in the training flow: the seventh candidate of the trained v1, a vote that wins is
registered like any winner, and a vote that fails is reported like a failed candidate."""

from __future__ import annotations

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
from flow_support import MODEL
from mlflow import MlflowClient
from prefect import flow
from prefect.logging import disable_run_logger

from flows.settings import get_settings
from flows.training import add_vote
from tasks.data.features import load_split
from tasks.data.prepare_steps import PreparedData
from tasks.data.shifts import SHIFTS
from tasks.registry.promotion_steps import register_task
from tasks.tracking import ParentRun
from tasks.training.candidates import CANDIDATES
from tasks.training.evaluation import CandidateResult
from tasks.training.search import fit_candidate
from tasks.training.vote import VOTE, choose_vote
from tasks.training.vote_steps import MEMBERS_TAG
from vehicle_model.vote import VoteHead

pytestmark = pytest.mark.flows

ATTRIBUTES = ["vehicle_type", "color"]


def _child_runs(parent_run_id: str) -> pd.DataFrame:
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def _members(line: str) -> dict[str, list[str]]:
    return {attribute: names.split("+") for attribute, names in (part.split("=") for part in line.split("; "))}


def _v1_prepared(v1) -> PreparedData:
    tags = MlflowClient().get_model_version(MODEL, "1").tags
    manifest = v1.prepared / tags["fingerprint"][:16] / "split-seed0.csv"
    return PreparedData(
        source=str(v1.dataset),
        fingerprint=tags["fingerprint"],
        manifest=manifest,
        features=manifest.with_suffix(".npz"),
        attributes=ATTRIBUTES,
        counts=pd.read_csv(manifest)["split"].value_counts().to_dict(),
        featurizer_version=tags["featurizer"],
    )


def test_the_vote_runs_as_a_seventh_candidate_that_names_its_members(trained_v1_copy):
    summary = trained_v1_copy.summary
    children = _child_runs(summary.parent_run_id)

    [vote] = children[children["tags.candidate"] == VOTE].to_dict(orient="records")
    assert (vote["status"], vote["tags.mlflow.runName"]) == ("FINISHED", VOTE)
    members = _members(vote[f"tags.{MEMBERS_TAG}"])
    assert list(members) == ATTRIBUTES and vote[f"params.{MEMBERS_TAG}"] == vote[f"tags.{MEMBERS_TAG}"]
    for attribute, names in members.items():
        assert len(names) >= 2 and set(names) <= set(CANDIDATES), names
        assert vote[f"params.{attribute}.k"] == str(len(names))
    for metric in ("val.macro_f1", "val.color.ece", "shift.worst.macro_f1", "predict_ms_per_image", "model_bytes"):
        assert np.isfinite(vote[f"metrics.{metric}"]), metric
    assert all(np.isfinite(vote[f"metrics.shift.{kind}.macro_f1"]) for kind in SHIFTS)
    member_fits = children[children["tags.candidate"].isin({n for names in members.values() for n in names})]
    assert vote["metrics.fit_seconds"] >= member_fits["metrics.fit_seconds"].sum(), "its members' fits count"
    artifacts = {a.path for a in MlflowClient().list_artifacts(vote["run_id"], "confusion_matrix")}
    assert artifacts == {f"confusion_matrix/{a}.png" for a in ATTRIBUTES}
    assert all(isinstance(vote.get(f"params.threshold.{a}"), str) for a in ATTRIBUTES), "thresholds, as a candidate's"
    assert "decisions.json" in {a.path for a in MlflowClient().list_artifacts(vote["run_id"])}

    board = summary.leaderboard
    assert sorted(row["candidate"] for row in board) == sorted([*CANDIDATES, VOTE])
    assert board[0]["candidate"] == summary.winner
    assert board[0]["val.macro_f1"] == max(row["val.macro_f1"] for row in board), "the vote wins only on validation"


def test_a_vote_that_wins_is_registered_and_answers_through_the_pyfunc(trained_v1_copy, tmp_path):
    prepared = _v1_prepared(trained_v1_copy)
    X, ys = load_split(prepared.features, "train", ATTRIBUTES)
    X_val, ys_val = load_split(prepared.features, "validation", ATTRIBUTES)
    fitted = {name: fit_candidate(name, X, ys, budget_seconds=0.001).heads for name in ("logistic_regression", "knn")}
    vote = choose_vote(fitted, X_val, ys_val)
    joblib.dump(vote.heads, tmp_path / "vote.joblib")
    winner = CandidateResult(VOTE, trained_v1_copy.summary.parent_run_id, str(tmp_path / "vote.joblib"), {})

    with disable_run_logger():
        version = register_task.fn(winner, trained_v1_copy.summary.test_metrics, winner.run_id, MODEL, prepared, {})

    assert MlflowClient().get_model_version(MODEL, version).tags["candidate"] == VOTE
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    heads = model.unwrap_python_model().classifier.heads
    assert all(isinstance(head, VoteHead) for head in heads.values())
    image = trained_v1_copy.dataset / pd.read_csv(trained_v1_copy.dataset / "labels.csv")["image"][0]
    [record] = model.predict(pd.DataFrame({"image": [image.read_bytes()]}))
    assert set(record) == set(ATTRIBUTES)
    assert sum(record["vehicle_type"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_a_vote_that_fails_is_a_failed_candidate_and_the_run_goes_on(trained_v1_copy, tmp_path):
    prepared = _v1_prepared(trained_v1_copy)
    experiment = mlflow.get_experiment(MlflowClient().get_run(trained_v1_copy.summary.parent_run_id).info.experiment_id)
    missing = [CandidateResult(name, "-", str(tmp_path / f"{name}.joblib"), {}, {}) for name in ("a", "b")]

    @flow
    def vote_on_missing_heads():
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            parent = ParentRun(experiment.experiment_id, run.info.run_id, "http://mlflow")
            return run.info.run_id, add_vote(missing, [], prepared, "macro_f1", 0, parent, get_settings(), tmp_path)

    parent_run_id, (results, failures) = vote_on_missing_heads()

    assert results == missing
    [failure] = failures
    assert failure.name == VOTE and "FileNotFoundError" in failure.error
    children = _child_runs(parent_run_id)
    assert set(children["status"]) == {"FAILED"} and len(children) == 2, "one failed child run per attempt (1 retry)"
    assert children["tags.error"].str.contains("No such file").all()
