"""Prefect tasks for registration and the promotion gate, and the lock around them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import joblib
import mlflow
import pandas as pd
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from tasks.evaluation import evaluate_heads, score
from tasks.features import load_split
from tasks.registry import (
    PromotionDecision,
    apply_decision,
    log_classifier,
    register_version,
    version_for_alias,
)
from tasks.tracking import MLFLOW_RETRIES, MLFLOW_RETRY_DELAY, within_run
from tasks.train_steps import CandidateResult
from vehicle_model.featurizer import Featurizer
from vehicle_model.model import VehicleClassifier


@contextmanager
def registry_lock(model_name: str, timeout_seconds: float = 1800) -> Iterator[None]:
    """Serialises register+promote across flow runs with a Prefect global concurrency limit.

    The limit (one slot) is created on first use; ``strict`` makes a missing limit an error
    rather than a silent no-op.
    """
    name = f"model-registry-{model_name}"
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass
    with concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_seconds):
        yield


@task(name="score-champion", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def champion_score_task(
    model_name: str, alias: str, features: str, manifest: str, attributes: list[str], metric: str
) -> tuple[str | None, float | None, str]:
    """Re-scores the current champion on this run's test split.

    Returns (champion version, score, note). A champion for other attributes is not
    comparable and scores None, so the new model can replace it.
    """
    current = version_for_alias(MlflowClient(), model_name, alias)
    if current is None:
        return None, None, "no champion yet"
    champion_version = str(current.version)
    classifier: VehicleClassifier = mlflow.pyfunc.load_model(
        f"models:/{model_name}/{champion_version}"
    ).unwrap_python_model().classifier
    if set(classifier.attributes) != set(attributes):
        return champion_version, None, f"champion predicts {classifier.attributes}, this data has {attributes}"
    X_test, ys_test = load_split(features, "test", attributes)
    if classifier.featurizer.version != Featurizer().version:
        frame = pd.read_csv(manifest)
        X_test = classifier.featurizer.transform_paths(list(frame.loc[frame["split"] == "test", "image"]))
    metrics = evaluate_heads(classifier.heads, X_test, ys_test, "test")
    value = score(metrics, "test", metric)
    get_run_logger().info("Champion v%s re-scored on this test split: %s %.4f", champion_version, metric, value)
    return champion_version, value, "re-scored on this run's test split"


@task(name="register-model", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def register_task(
    winner: CandidateResult, test_metrics: dict[str, float], parent_run_id: str, model_name: str, tags: dict[str, str]
) -> str:
    """Logs the winner as one self-contained pyfunc on the parent run and registers it."""
    classifier = VehicleClassifier(featurizer=Featurizer(), heads=joblib.load(winner.heads_path))
    with within_run(parent_run_id):
        info = log_classifier(classifier, metadata={"candidate": winner.name, "metrics": test_metrics})
    # "pending" until the gate decides: a run killed in between leaves a version that says so.
    version_tags = {
        "candidate": winner.name, "promotion.decision": "pending", **tags,
        **{k: f"{v:.6f}" for k, v in test_metrics.items()},
    }
    version = register_version(info.model_uri, model_name, version_tags)
    get_run_logger().info("Registered %s version %s (%s)", model_name, version.version, winner.name)
    return str(version.version)


@task(name="promotion-gate", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def promote_task(
    model_name: str, alias: str, version: str, decision: PromotionDecision, champion_version: str | None
) -> None:
    """Moves the aliases per the gate and emits ``vehicle.model.promoted`` on promotion."""
    apply_decision(MlflowClient(), model_name, version, decision, alias)
    logger = get_run_logger()
    if decision.promote:
        emit_event(
            event="vehicle.model.promoted",
            resource={"prefect.resource.id": f"mlflow.model-version.{model_name}.{version}", "prefect.resource.name": model_name},
            payload={
                "version": version,
                "previous_champion": champion_version,
                "candidate_score": decision.candidate_score,
                "champion_score": decision.champion_score,
                "reason": decision.reason,
            },
        )
        logger.info("Promoted %s v%s to champion: %s", model_name, version, decision.reason)
    else:
        logger.info("Kept champion v%s; v%s is challenger: %s", champion_version, version, decision.reason)


