"""Flow: prepare data → (nothing new? stop) → train six candidates, vote → evaluate → gate → register → promote."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from flows.logs import file_logger
from flows.prepare import prepare_data
from flows.runners import make_task_runner
from flows.settings import PipelineSettings, gate_policy, get_settings
from tasks.data.dataset_steps import resolve_dataset_task
from tasks.data.prepare_steps import PreparedData
from tasks.defaults import AUGMENT_COPIES, MIN_IMPROVEMENT, TIME_BUDGET_SECONDS
from tasks.monitoring.reference import log_reference_task
from tasks.registry.gate import decision_markdown
from tasks.registry.lock import registry_lock
from tasks.registry.promotion_steps import (
    gate_task,
    promote_task,
    register_task,
    report_skip_task,
    unchanged_since_task,
)
from tasks.registry.retrain import SkippedRun
from tasks.tracking import ParentRun, local_artifact_root, parent_run, use_tracking_store
from tasks.training.candidates import candidate_names
from tasks.training.evaluation import CandidateFailure, CandidateResult, leaderboard, score
from tasks.training.train_steps import (
    publish_leaderboard_task,
    report_decision_task,
    score_on_test_task,
    train_candidate_task,
)
from tasks.training.vote import MIN_MEMBERS, VOTE
from tasks.training.vote_steps import train_vote_task

Metric = Literal["macro_f1", "accuracy", "log_loss", "ece"]


@dataclass(frozen=True)
class TrainingSummary:
    winner: str
    version: str
    promoted: bool
    reason: str
    test_metrics: dict[str, float]
    champion_version: str | None
    champion_score: float | None
    failed: dict[str, str]
    leaderboard: list[dict]
    parent_run_id: str


@flow(name="train-pipeline", log_prints=True)
def train_pipeline(
    data: str | None = None,
    candidates: list[str] | None = None,
    metric: Metric = "macro_f1",
    min_improvement: float = MIN_IMPROVEMENT,
    seed: Annotated[int, Field(ge=0)] = 0,
    time_budget_seconds: Annotated[float, Field(gt=0)] = TIME_BUDGET_SECONDS,
    augment_copies: Annotated[int, Field(ge=0)] = AUGMENT_COPIES,
    force: bool = False,
    trigger: str | None = None,
    drift_regions: list[str] | None = None,
    vote: bool = True,
) -> TrainingSummary | SkippedRun:
    """Trains the candidate heads, registers the best and promotes it if the gate passes.

    Args:
        data: dataset path (CSV manifest, folder with labels.csv, ImageFolder, or a root of
            batch folders), or ``synthetic``; empty means the ``PIPELINE_TRAINING_DATA`` setting.
        candidates: candidate names to train; all six when empty.
        metric: metric that picks the winner (validation) and judges it against the champion.
        min_improvement: gain over the champion (same unseen test images) needed to promote.
        seed: seed for the split, the searches, the models and the gate's bootstrap.
        time_budget_seconds: per-candidate budget for the search and the refit together; a
            candidate ends within it plus one fit, and says on the leaderboard when it was cut.
        augment_copies: shifted copies of each training image added to the heads' refit
            (``tasks.data.shifts``); 0 trains on the clean images alone.
        force: train even when the data and featurizer are unchanged since the champion.
        trigger: what started this run (e.g. ``schedule``, ``drift``); shown if the run is skipped.
        drift_regions: regions where drift was seen, when a drift check started this run.
        vote: also score a seventh candidate, the soft vote of the best of the others
            (``tasks.training.vote``), when at least two succeed; it wins only on validation.
    """
    if trigger:
        get_run_logger().info(
            "Started by %s%s", trigger, f"; drift in {', '.join(drift_regions)}" if drift_regions else ""
        )
    settings = get_settings()
    names = candidate_names(candidates)
    use_tracking_store(settings.mlflow_tracking_uri)
    path = resolve_dataset_task(data or settings.training_data, settings.data_dir, seed)
    prepared = prepare_data(path, seed=seed, settings=settings, augment_copies=augment_copies)
    skip = None if force else unchanged_since_task(settings.model_name, settings.model_alias, prepared)
    if skip is not None:
        return report_skip_task(skip, trigger, drift_regions, settings.labels_database_url)
    artifact_root = local_artifact_root(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    with (
        parent_run(
            settings.mlflow_experiment,
            artifact_root,
            settings.mlflow_ui_url,
            flow_run.get_name(),
            _run_tags(),
            prepared,
        ) as parent,
        heads_folder(prepared) as heads_dir,
    ):
        results, failures = train_candidates(
            names, prepared, seed, time_budget_seconds, parent.experiment_id, parent.run_id, settings, heads_dir
        )
        if vote and len(results) >= MIN_MEMBERS:
            results, failures = add_vote(results, failures, prepared, metric, seed, parent, settings, heads_dir)
        board = leaderboard(results, metric)
        publish_leaderboard_task(board, failures, parent.run_id, parent.url, metric)
        winner = next(r for r in results if r.name == board.iloc[0]["candidate"])
        test_metrics = score_on_test_task(winner, str(prepared.features), prepared.attributes, parent.run_id)
        with registry_lock(settings.model_name):
            decision = gate_task(
                settings.model_name,
                settings.model_alias,
                winner,
                test_metrics,
                prepared,
                metric,
                gate_policy(settings, min_improvement, seed),
                str(settings.feature_cache_dir),
            )
            tags = {"flow_run_id": str(flow_run.get_id()), "selection_metric": metric}
            version = register_task(winner, test_metrics, parent.run_id, settings.model_name, prepared, tags)
            log_reference_task(
                winner.heads_path,
                str(prepared.features),
                prepared.attributes,
                parent.run_id,
                settings.model_name,
                version,
            )
            promote_task(settings.model_name, settings.model_alias, version, decision, parent.run_id)
    summary = TrainingSummary(
        winner=winner.name,
        version=version,
        promoted=decision.promote,
        reason=decision.reason,
        test_metrics=test_metrics,
        champion_version=decision.champion_version,
        champion_score=decision.champion_score,
        failed={f.name: f.error for f in failures},
        leaderboard=board.to_dict(orient="records"),
        parent_run_id=parent.run_id,
    )
    report_decision_task(
        decision_markdown(decision, version, winner.name, metric, score(test_metrics, "test", metric), summary.failed)
    )
    file_logger("evaluation", settings.log_dir).info("decision", extra=asdict(summary))
    return summary


@contextmanager
def heads_folder(prepared: PreparedData) -> Iterator[Path]:
    """This run's fitted heads, next to the features (storage every worker shares).

    Only registration reads them (the model version holds its own copy), so the folder is
    removed when the run ends, failed or not.
    """
    folder = prepared.features.parent / f"heads-{flow_run.get_id() or uuid.uuid4().hex}"
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_candidates(
    names: list[str],
    prepared: PreparedData,
    seed: int,
    budget: float,
    experiment_id: str,
    parent_run_id: str,
    settings: PipelineSettings,
    out_dir: Path,
) -> tuple[list[CandidateResult], list[CandidateFailure]]:
    """Fans the candidates out on the configured runner; fails unless at least half succeed."""
    workers = max(1, min(settings.workers, len(names)))
    threads = max(1, settings.workers // workers)
    common = dict(
        features=str(prepared.features),
        attributes=prepared.attributes,
        seed=seed,
        budget_seconds=budget,
        tracking_uri=settings.mlflow_tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        out_dir=str(out_dir),
        threads=threads,
        target_precision=settings.target_precision,
    )
    with make_task_runner(settings, workers) as runner:
        futures = {name: runner.submit(train_candidate_task, {"name": name, **common}) for name in names}
        outcomes = {name: future.result(raise_on_failure=False) for name, future in futures.items()}
    results = [o for o in outcomes.values() if isinstance(o, CandidateResult)]
    failures = [CandidateFailure.from_error(n, o) for n, o in outcomes.items() if not isinstance(o, CandidateResult)]
    _log_outcomes(results, failures, settings)
    if len(results) * 2 < len(names):
        raise RuntimeError(
            f"only {len(results)} of {len(names)} candidates succeeded; failed: "
            + "; ".join(f"{f.name}: {f.error}" for f in failures)
        )
    return results, failures


def add_vote(
    results: list[CandidateResult],
    failures: list[CandidateFailure],
    prepared: PreparedData,
    metric: str,
    seed: int,
    parent: ParentRun,
    settings: PipelineSettings,
    out_dir: Path,
) -> tuple[list[CandidateResult], list[CandidateFailure]]:
    """The candidates and their vote, which joins them as one more candidate; a vote that
    fails is reported as a failed candidate is, and the run goes on without it."""
    # On the flow's thread pool, as the candidates' runs: this thread holds the parent run open.
    future = train_vote_task.submit(
        results,
        str(prepared.features),
        prepared.attributes,
        metric,
        seed,
        parent.experiment_id,
        parent.run_id,
        str(out_dir),
        settings.target_precision,
    )
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, CandidateResult):
        _log_outcomes([outcome], [], settings)
        return [*results, outcome], failures
    failure = CandidateFailure.from_error(VOTE, outcome)
    _log_outcomes([], [failure], settings)
    return results, [*failures, failure]


def _log_outcomes(results: list[CandidateResult], failures: list[CandidateFailure], settings: PipelineSettings) -> None:
    logger, training_log = get_run_logger(), file_logger("training", settings.log_dir)
    for failure in failures:
        logger.error("Candidate %s failed after retries: %s", failure.name, failure.error)
        training_log.error("candidate failed", extra={"candidate": failure.name, "error": failure.error})
    for result in results:
        training_log.info(
            "candidate trained", extra={"candidate": result.name, "run_id": result.run_id, **result.metrics}
        )


def _run_tags() -> dict[str, str]:
    return {"prefect.flow_run_id": str(flow_run.get_id()), "prefect.flow_run_url": str(flow_run.get_flow_run_ui_url())}
