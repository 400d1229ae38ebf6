"""Prefect tasks of the training flow: thin wrappers that add runs, logs and artifacts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from threadpoolctl import threadpool_limits

from tasks.data.features import load_shifted, load_split, load_split_if_present
from tasks.data.shifts import (
    AUGMENT_SPLIT,
    CALIBRATION_SPLIT_PREFIX,
    GREYSCALE_CALIBRATION_SPLIT,
    OVER_EXPOSURE_EXPERT_SPLIT,
)
from tasks.defaults import TARGET_PRECISION
from tasks.tracking import MLFLOW_RETRIES, MLFLOW_RETRY_DELAY, STAGE_TAG
from tasks.training.answers import remember, save_answers
from tasks.training.evaluation import (
    LOWER_IS_BETTER,
    SHIFT_METRIC_PREFIX,
    CandidateFailure,
    CandidateResult,
    class_report,
    confusion_figure,
    evaluate_heads,
    shift_metrics,
    shift_table,
    worst_shift,
)
from tasks.training.search import CV_FOLDS, fit_candidate
from tasks.training.selective import CLEAN, Sample, fit_policy, risk_coverage_figure, selective_metrics
from vehicle_model.decisions import DecisionPolicy
from vehicle_model.metadata import CANDIDATE_TAG
from vehicle_model.wrapped import innermost


@task(name="train-candidate", retries=1, retry_delay_seconds=1, task_run_name="train-{name}")
def train_candidate_task(
    name: str,
    features: str,
    attributes: list[str],
    seed: int,
    budget_seconds: float,
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str,
    out_dir: str,
    threads: int = 1,
    target_precision: float = TARGET_PRECISION,
) -> CandidateResult:
    """Fits one candidate in its own MLflow child run (on the train split and its augmented
    copies, if any), fits its decision thresholds (``fit_decisions``) and evaluates it on validation.

    An exception leaves the child run FAILED with an ``error`` tag and fails the task.
    """
    logger = get_run_logger()
    mlflow.set_tracking_uri(tracking_uri)
    X, ys = load_split(features, "train", attributes)
    X_val, ys_val = load_split(features, "validation", attributes)
    augmented = load_split_if_present(features, AUGMENT_SPLIT, attributes)
    greyscale = load_split_if_present(features, GREYSCALE_CALIBRATION_SPLIT, attributes)
    over_exposed = load_split_if_present(features, OVER_EXPOSURE_EXPERT_SPLIT, attributes)
    tags = {CANDIDATE_TAG: name, STAGE_TAG: "candidate"}
    with (
        threadpool_limits(threads),
        mlflow.start_run(experiment_id=experiment_id, run_name=name, parent_run_id=parent_run_id, tags=tags) as run,
    ):
        try:
            fitted = fit_candidate(
                name,
                X,
                ys,
                seed=seed,
                budget_seconds=budget_seconds,
                augmented=augmented,
                greyscale=greyscale,
                over_exposed=over_exposed,
            )
        except Exception as exc:
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
            raise
        mlflow.log_params(_flat_params(fitted, budget_seconds, seed, _rows(augmented), _rows(over_exposed)))
        # Scored through remembered heads: each set is predicted once, and the vote reuses it.
        scored = remember(fitted.heads)
        metrics = evaluate_heads(scored, X_val, ys_val, "val")
        metrics |= shift_metrics(scored, load_shifted(features, attributes))
        metrics |= {
            "fit_seconds": fitted.fit_seconds,
            "predict_ms_per_image": fitted.predict_ms_per_image(X_val),
        }
        metrics |= {f"cv.{a}.macro_f1": s for a, s in fitted.cv_scores.items() if not math.isnan(s)}
        heads_path = Path(out_dir) / f"{name}.joblib"
        heads_path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(fitted.heads, heads_path)
        metrics["model_bytes"] = float(heads_path.stat().st_size)  # the pickle's size, without pickling twice
        decisions_path, selective = fit_decisions(scored, features, attributes, target_precision, heads_path)
        budget_cut = "; ".join(f"{attribute}: {why}" for attribute, why in fitted.stopped_early.items())
        if budget_cut:
            mlflow.set_tag("budget_cut", budget_cut[:5000])
        mlflow.log_metrics(metrics | selective)
        log_validation_reports(name, scored, X_val, ys_val)
        save_answers(scored, heads_path)
    logger.info(
        "%s: val macro-F1 %.4f in %.1f s (params %s)", name, metrics["val.macro_f1"], fitted.fit_seconds, fitted.params
    )
    return CandidateResult(
        name,
        run.info.run_id,
        str(heads_path),
        fitted.params,
        metrics | selective,
        decisions_path=decisions_path,
        budget_cut=budget_cut,
    )


def fit_decisions(
    heads: Mapping[str, object], features: str, attributes: list[str], target_precision: float, heads_path: Path
) -> tuple[str, dict[str, float]]:
    """Fits the heads' decision thresholds on validation, clean and under each shift
    (``tasks.training.selective``); logs them on the active run (params ``threshold.<attribute>``,
    artifact ``decisions.json``, figures ``risk_coverage/<attribute>.png``) and saves the policy
    beside the heads (``<name>.decisions.json``).

    Returns:
        The policy's path, and the selective metrics on validation (``val.selective.*``, in
        sample: the thresholds were fitted on these images) and on each shift kind of the
        test images (``shift.<kind>.selective.*``).
    """
    policy, fits = fit_policy(heads, _calibration_conditions(features, attributes), target_precision)
    mlflow.log_params(
        {"target_precision": str(target_precision)}
        | {f"threshold.{a}": "none" if t is None else f"{t:.6f}" for a, t in policy.thresholds.items()}
    )
    mlflow.log_dict(policy.to_dict(), "decisions.json")
    for attribute, fit in fits.items():
        mlflow.log_figure(risk_coverage_figure(fit, attribute, target_precision), f"risk_coverage/{attribute}.png")
    path = heads_path.with_suffix(".decisions.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(policy.to_json())
    X_val, ys_val = load_split(features, "validation", attributes)
    metrics = selective_metrics(heads, policy, X_val, ys_val, "val")
    for kind, (X, ys) in load_shifted(features, attributes).items():
        metrics |= selective_metrics(heads, policy, X, ys, f"{SHIFT_METRIC_PREFIX}{kind}")
    return str(path), metrics


def _calibration_conditions(features: str, attributes: list[str]) -> dict[str, Sample]:
    """Condition -> validation rows: ``clean``, then each shift kind the features hold a copy for."""
    with np.load(features) as data:
        splits = sorted(k.removeprefix("X_") for k in data.files if k.startswith(f"X_{CALIBRATION_SPLIT_PREFIX}"))
    shifted = {
        split.removeprefix(CALIBRATION_SPLIT_PREFIX): load_split(features, split, attributes) for split in splits
    }
    return {CLEAN: load_split(features, "validation", attributes), **shifted}


def log_validation_reports(
    name: str, heads: Mapping[str, object], X_val: np.ndarray, ys_val: Mapping[str, np.ndarray]
) -> None:
    """Each attribute's confusion matrix and class report on validation, on the active run."""
    for attribute, head in heads.items():
        mlflow.log_figure(
            confusion_figure(head, X_val, ys_val[attribute], f"{name}: {attribute} (validation)"),
            f"confusion_matrix/{attribute}.png",
        )
        mlflow.log_dict(class_report(head, X_val, ys_val[attribute]), f"class_report/{attribute}.json")


def _rows(split: tuple[object, object] | None) -> int:
    return 0 if split is None else len(split[0])


def _flat_params(
    fitted, budget_seconds: float, seed: int, augmented_rows: int, over_exposed_rows: int
) -> dict[str, str]:
    """Every hyperparameter of every head (simple values only), plus the search settings."""
    params: dict[str, str] = {
        "budget_seconds": str(budget_seconds),
        "seed": str(seed),
        "cv_folds": str(CV_FOLDS),
        "augmented_rows": str(augmented_rows),
        "over_exposed_rows": str(over_exposed_rows),
    }
    for attribute, head in fitted.heads.items():
        # The wrappers add no parameters of their own.
        for key, value in innermost(head).get_params(deep=True).items():
            if isinstance(value, (int, float, str, bool, type(None))):
                params[f"{attribute}.{key}"] = str(value)[:500]
        if attribute in fitted.greyscale_temperatures:
            params[f"{attribute}.greyscale_temperature"] = f"{fitted.greyscale_temperatures[attribute]:.4f}"
        params[f"{attribute}.search_trials"] = str(fitted.trials[attribute])
        for key, value in fitted.params[attribute].items():
            params[f"{attribute}.chosen.{key}"] = str(value)
    return params


@task(name="publish-leaderboard", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def publish_leaderboard_task(
    board: pd.DataFrame, failures: list[CandidateFailure], parent_run_id: str, parent_url: str, metric: str
) -> None:
    """The leaderboard as an MLflow table on the parent run and as Prefect artifacts."""
    mlflow.log_table(board, artifact_file="leaderboard.json", run_id=parent_run_id)
    records = board.round(4).to_dict(orient="records")
    records += [{"rank": "-", "candidate": f.name, "error": f.error[:300]} for f in failures]
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    create_table_artifact(
        key="leaderboard", table=records, description=f"Candidates by validation {metric} ({direction} is better)"
    )
    create_link_artifact(
        key="mlflow-run", link=parent_url, link_text="MLflow parent run", description="Compare candidates"
    )
    get_run_logger().info("Leaderboard:\n%s", board.drop(columns="run_id").round(4).to_string(index=False))


@task(name="score-on-test", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def score_on_test_task(
    result: CandidateResult, features: str, attributes: list[str], parent_run_id: str
) -> dict[str, float]:
    """Scores the winner once on the untouched test split; logged on its run and the parent,
    with its scores on the shifted test images (``shift.*``) beside them on the parent.

    Returns:
        The clean test metrics, its decisions' precision and coverage (``test.selective.*``) among them.
    """
    heads = remember(joblib.load(result.heads_path))
    X_test, ys_test = load_split(features, "test", attributes)
    metrics = evaluate_heads(heads, X_test, ys_test, "test")
    if result.decisions_path:
        policy = DecisionPolicy.from_json(Path(result.decisions_path).read_text())
        metrics |= selective_metrics(heads, policy, X_test, ys_test, "test")
    # The same heads were scored on the shifted test images when they were trained.
    shifted = {key: value for key, value in result.metrics.items() if key.startswith(SHIFT_METRIC_PREFIX)}
    client = mlflow.MlflowClient()
    for run_id in (result.run_id, parent_run_id):
        for key, value in (metrics | shifted if run_id == parent_run_id else metrics).items():
            client.log_metric(run_id, key, value)
    if shifted:
        client.log_table(parent_run_id, shift_table(metrics, shifted, attributes), artifact_file="shifts.json")
    worst = worst_shift(shifted)
    get_run_logger().info(
        "Winner %s on test: macro-F1 %.4f%s",
        result.name,
        metrics["test.macro_f1"],
        f"; worst shift {worst[0]}: {worst[1]:.4f}" if worst else "",
    )
    return metrics


@task(name="report-decision")
def report_decision_task(markdown: str) -> None:
    create_markdown_artifact(key="promotion-decision", markdown=markdown, description="Registration and promotion")
