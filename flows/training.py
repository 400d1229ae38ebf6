"""Flow: prepare data → train six candidates → evaluate → register → promote."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import mlflow
import pandas as pd
from prefect import flow, get_run_logger
from pydantic import Field
from prefect.runtime import flow_run

from flows.logs import file_logger
from flows.prepare import prepare_data
from flows.runners import make_task_runner
from flows.settings import PipelineSettings, get_settings
from tasks.candidates import CANDIDATES
from tasks.dataset_steps import resolve_dataset_task
from tasks.evaluation import score
from tasks.prepare_steps import PreparedData
from tasks.promotion_steps import champion_score_task, promote_task, register_task, registry_lock
from tasks.registry import decide
from tasks.tracking import use_tracking_store, ensure_experiment, git_commit, local_artifact_root, run_url
from tasks.train_steps import (
    CandidateFailure,
    CandidateResult,
    leaderboard,
    publish_leaderboard_task,
    report_decision_task,
    score_on_test_task,
    train_candidate_task,
)

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
    data: str = "synthetic",
    candidates: list[str] | None = None,
    metric: Metric = "macro_f1",
    min_improvement: float = 0.005,
    seed: Annotated[int, Field(ge=0)] = 0,
    time_budget_seconds: Annotated[float, Field(gt=0)] = 120.0,
) -> TrainingSummary:
    """Trains the candidate heads, registers the best and promotes it if it beats the champion.

    Args:
        data: dataset path (CSV manifest, folder with labels.csv, or ImageFolder), or
            ``synthetic`` for the generated default dataset.
        candidates: candidate names to train; all six when empty.
        metric: validation metric that picks the winner (averaged over attributes).
        min_improvement: how much better than the champion (test split) a model must be to be promoted.
        seed: seed for the split, the searches and the models.
        time_budget_seconds: per-candidate budget for the hyperparameter search.
    """
    settings = get_settings()
    names = _candidate_names(candidates)
    use_tracking_store(settings.mlflow_tracking_uri)
    path = resolve_dataset_task(data, settings.data_dir, seed)
    prepared = prepare_data(path, seed=seed, settings=settings)
    experiment_id = ensure_experiment(
        settings.mlflow_experiment, local_artifact_root(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=flow_run.get_name(), tags=_run_tags(prepared)) as parent, \
            heads_folder(prepared) as heads_dir:
        _log_dataset(prepared)
        parent_url = run_url(settings.mlflow_ui_url, experiment_id, parent.info.run_id)
        results, failures = train_candidates(
            names, prepared, seed, time_budget_seconds, experiment_id, parent.info.run_id, settings, heads_dir
        )
        board = leaderboard(results, metric)
        publish_leaderboard_task(board, failures, parent.info.run_id, parent_url, metric)
        winner = next(r for r in results if r.name == board.iloc[0]["candidate"])
        test_metrics = score_on_test_task(winner, str(prepared.features), prepared.attributes, parent.info.run_id)
        with registry_lock(settings.model_name):
            champion, champion_score, note = champion_score_task(
                settings.model_name, settings.model_alias, str(prepared.features), str(prepared.manifest), prepared.attributes, metric
            )
            tags = {"fingerprint": prepared.fingerprint, "flow_run_id": str(flow_run.get_id()), "selection_metric": metric}
            version = register_task(winner, test_metrics, parent.info.run_id, settings.model_name, tags)
            decision = decide(score(test_metrics, "test", metric), champion_score, min_improvement)
            promote_task(settings.model_name, settings.model_alias, version, decision, champion)
    summary = TrainingSummary(
        winner=winner.name, version=version, promoted=decision.promote, reason=decision.reason,
        test_metrics=test_metrics, champion_version=champion, champion_score=champion_score,
        failed={f.name: f.error for f in failures}, leaderboard=board.to_dict(orient="records"),
        parent_run_id=parent.info.run_id,
    )
    report_decision_task(_decision_markdown(summary, metric, note))
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
    names: list[str], prepared: PreparedData, seed: int, budget: float, experiment_id: str, parent_run_id: str,
    settings: PipelineSettings, out_dir: Path,
) -> tuple[list[CandidateResult], list[CandidateFailure]]:
    """Fans the candidates out on the configured runner; fails unless at least half succeed."""
    workers = max(1, min(settings.workers, len(names)))
    threads = max(1, settings.workers // workers)
    common = dict(
        features=str(prepared.features), attributes=prepared.attributes, seed=seed, budget_seconds=budget,
        tracking_uri=settings.mlflow_tracking_uri, experiment_id=experiment_id, parent_run_id=parent_run_id,
        out_dir=str(out_dir), threads=threads,
    )
    with make_task_runner(settings, workers) as runner:
        futures = {name: runner.submit(train_candidate_task, {"name": name, **common}) for name in names}
        outcomes = {name: future.result(raise_on_failure=False) for name, future in futures.items()}
    results = [o for o in outcomes.values() if isinstance(o, CandidateResult)]
    failures = [CandidateFailure(n, _one_line(o)) for n, o in outcomes.items() if not isinstance(o, CandidateResult)]
    logger, training_log = get_run_logger(), file_logger("training", settings.log_dir)
    for failure in failures:
        logger.error("Candidate %s failed after retries: %s", failure.name, failure.error)
        training_log.error("candidate failed", extra={"candidate": failure.name, "error": failure.error})
    for result in results:
        training_log.info("candidate trained", extra={"candidate": result.name, "run_id": result.run_id, **result.metrics})
    if len(results) * 2 < len(names):
        raise RuntimeError(f"only {len(results)} of {len(names)} candidates succeeded; failed: "
                           + "; ".join(f"{f.name}: {f.error}" for f in failures))
    return results, failures


def _one_line(error: BaseException) -> str:
    """The error's type and its last message line (scikit-learn puts the cause last)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:500]


def _candidate_names(candidates: list[str] | None) -> list[str]:
    names = list(candidates or CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise ValueError(f"unknown candidates {unknown}; choose from {sorted(CANDIDATES)}")
    return names


def _run_tags(prepared: PreparedData) -> dict[str, str]:
    return {
        "prefect.flow_run_id": str(flow_run.get_id()),
        "prefect.flow_run_url": str(flow_run.get_flow_run_ui_url()),
        "git_commit": git_commit(),
        "dataset.fingerprint": prepared.fingerprint,
        "dataset.path": prepared.source,
        "featurizer": prepared.featurizer_version,
        "stage": "pipeline",
    }


def _log_dataset(prepared: PreparedData) -> None:
    frame = pd.read_csv(prepared.manifest)
    dataset = mlflow.data.from_pandas(frame, source=prepared.source, name=f"vehicles-{prepared.fingerprint[:12]}")
    mlflow.log_input(dataset, context="training")
    mlflow.log_params({"dataset.fingerprint": prepared.fingerprint, **{f"dataset.{k}": v for k, v in prepared.counts.items()}})


def _decision_markdown(summary: TrainingSummary, metric: str, note: str) -> str:
    champion = "none" if summary.champion_score is None else f"v{summary.champion_version}: {summary.champion_score:.4f}"
    outcome = "promoted to **champion**" if summary.promoted else "kept as **challenger**"
    failed = "".join(f"\n- {name}: {error}" for name, error in summary.failed.items()) or " none"
    return (
        f"# v{summary.version} ({summary.winner}) {outcome}\n\n"
        f"- test {metric}: new {summary.test_metrics[f'test.{metric}']:.4f}, champion {champion} ({note})\n"
        f"- reason: {summary.reason}\n- failed candidates:{failed}\n"
    )
