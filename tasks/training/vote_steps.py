"""Prefect task of the vote: the seventh candidate, built from the fitted ones in its own MLflow child run."""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import mlflow
from prefect import get_run_logger, task

from tasks.data.features import load_shifted, load_split
from tasks.defaults import TARGET_PRECISION
from tasks.tracking import STAGE_TAG
from tasks.training.answers import load_answers, remember
from tasks.training.evaluation import CandidateResult, evaluate_heads, shift_metrics
from tasks.training.search import FittedCandidate
from tasks.training.train_steps import fit_decisions, log_validation_reports
from tasks.training.vote import VOTE, Vote, choose_vote
from vehicle_model.metadata import CANDIDATE_TAG
from vehicle_model.vote import VoteHead

MEMBERS_TAG = "members"


@task(name="train-vote", retries=1, retry_delay_seconds=1)
def train_vote_task(
    candidates: list[CandidateResult],
    features: str,
    attributes: list[str],
    metric: str,
    seed: int,
    experiment_id: str,
    parent_run_id: str,
    out_dir: str,
    target_precision: float = TARGET_PRECISION,
) -> CandidateResult:
    """Chooses the vote of the fitted ``candidates`` on validation and scores it as a candidate
    is scored, in a child run named ``vote`` whose ``members`` tag names its members, with its
    decision thresholds fitted as a candidate's are (``fit_decisions``).

    Its validation metrics are those of its cross-fitted answers (``tasks.training.vote``).
    An exception leaves the child run FAILED with an ``error`` tag and fails the task.
    """
    X_val, ys_val = load_split(features, "validation", attributes)
    tags = {CANDIDATE_TAG: VOTE, STAGE_TAG: "candidate"}
    with mlflow.start_run(experiment_id=experiment_id, run_name=VOTE, parent_run_id=parent_run_id, tags=tags) as run:
        try:
            started = time.perf_counter()
            # The members answer from what they answered when they were scored (tasks.training.answers).
            members = {c.name: remember(joblib.load(c.heads_path), load_answers(c.heads_path)) for c in candidates}
            vote = choose_vote(members, X_val, ys_val, metric, seed)
            choosing = time.perf_counter() - started
            shipped = {attribute: _forgetting(head) for attribute, head in vote.heads.items()}
        except Exception as exc:
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
            raise
        mlflow.set_tag(MEMBERS_TAG, vote.members_line())
        params = {attribute: {"members": "+".join(names), "k": len(names)} for attribute, names in vote.members.items()}
        mlflow.log_params(_flat_params(vote, params, seed, metric))
        # Its members' fits count: the vote cannot exist without them.
        member_seconds = sum(c.metrics["fit_seconds"] for c in candidates if c.name in _distinct(vote.members))
        fitted = FittedCandidate(VOTE, shipped, fit_seconds=choosing + member_seconds)
        metrics = evaluate_heads(vote.validation, X_val, ys_val, "val")
        metrics |= shift_metrics(vote.heads, load_shifted(features, attributes))
        metrics |= {
            "fit_seconds": fitted.fit_seconds,
            "vote_seconds": choosing,
            "predict_ms_per_image": fitted.predict_ms_per_image(X_val),
        }
        heads_path = Path(out_dir) / f"{VOTE}.joblib"
        joblib.dump(shipped, heads_path)
        metrics["model_bytes"] = float(heads_path.stat().st_size)
        decisions_path, selective = fit_decisions(vote.heads, features, attributes, target_precision, heads_path)
        mlflow.log_metrics(metrics | selective)
        log_validation_reports(VOTE, vote.validation, X_val, ys_val)
    get_run_logger().info("vote of %s: val macro-F1 %.4f", vote.members_line(), metrics["val.macro_f1"])
    return CandidateResult(
        VOTE, run.info.run_id, str(heads_path), params, metrics | selective, decisions_path=decisions_path
    )


def _forgetting(head: VoteHead) -> VoteHead:
    """The vote as it ships: its members themselves, not their remembered answers."""
    return VoteHead([member.head for member in head.members], head.names)


def _flat_params(vote: Vote, params: dict[str, dict], seed: int, metric: str) -> dict[str, str]:
    flat = {MEMBERS_TAG: vote.members_line(), "seed": str(seed), "selection_metric": metric}
    for attribute, chosen in params.items():
        flat |= {f"{attribute}.{key}": str(value) for key, value in chosen.items()}
    return flat


def _distinct(members: dict[str, list[str]]) -> set[str]:
    return {name for names in members.values() for name in names}
