"""Prefect tasks for the retrain check, the gate, registration and promotion, and the lock around them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from tasks.data.dataset import IMAGE_COLUMN, SPLIT_COLUMN
from tasks.data.features import FeatureCache, features_from
from tasks.data.harvest_steps import review_backlog
from tasks.data.prepare_steps import PreparedData
from tasks.data.validation import SHA_COLUMN
from tasks.registry.aliases import CHALLENGER
from tasks.registry.gate import (
    DECISION_TAG,
    REASON_TAG,
    GatePolicy,
    Probabilities,
    PromotionDecision,
    contract_changes,
    decide,
    paired_bootstrap,
)
from tasks.registry.retrain import SkippedRun, unchanged_since
from tasks.registry.versions import (
    apply_decision,
    log_classifier,
    register_version,
    version_contract,
    version_featurizer,
    version_for_alias,
)
from tasks.tracking import MLFLOW_RETRIES, MLFLOW_RETRY_DELAY, within_run
from tasks.training.evaluation import CandidateResult, score
from vehicle_model.decisions import DecisionPolicy
from vehicle_model.featurizer import Featurizer
from vehicle_model.metadata import (
    CANDIDATE,
    CANDIDATE_TAG,
    DATASET_TAG,
    FEATURIZER_TAG,
    FINGERPRINT_TAG,
    IMAGES_TAG,
    METRICS,
)
from vehicle_model.model import VehicleClassifier

TRAINING_IMAGES_ARTIFACT = "training_images.json"


@task(name="check-for-new-data")
def unchanged_since_task(model_name: str, alias: str, prepared: PreparedData) -> SkippedRun | None:
    """The version already trained on this snapshot with this featurizer, if any (champion first)."""
    client = MlflowClient()
    champion = version_for_alias(client, model_name, alias)
    challenger = version_for_alias(client, model_name, CHALLENGER)
    judged = [
        (name, str(v.version), v.tags) for name, v in ((alias, champion), (CHALLENGER, challenger)) if v is not None
    ]
    found = unchanged_since(judged, prepared.fingerprint, prepared.featurizer_version)
    if found is None:
        return None
    found_alias, version, tags = found
    return SkippedRun(
        version=version,
        alias=found_alias,
        champion_version=str(champion.version) if champion else None,
        dataset=tags.get(DATASET_TAG, prepared.source),
        fingerprint=prepared.fingerprint,
        images=tags.get(IMAGES_TAG, "?"),
        promotion_reason=tags.get(REASON_TAG, ""),
        champion_alias=alias,
    )


@task(name="report-skip")
def report_skip_task(
    skip: SkippedRun, trigger: str | None, drift_regions: list[str] | None, labels_url: str | None = None
) -> SkippedRun:
    """Publishes why nothing was trained, and what in the label store (``labels_url``) is waiting
    to be reviewed or harvested; the returned run carries the trigger context."""
    waiting, harvestable = review_backlog(labels_url) if labels_url else ({}, {})
    skip = replace(
        skip, trigger=trigger, drift_regions=tuple(drift_regions or ()), waiting=waiting, harvestable=harvestable
    )
    create_markdown_artifact(
        key="training-skipped", markdown=skip.markdown(), description="Why this run trained nothing"
    )
    get_run_logger().info("Training skipped: %s", skip.line)
    return skip


@task(name="promotion-gate", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def gate_task(
    model_name: str,
    alias: str,
    winner: CandidateResult,
    test_metrics: dict[str, float],
    prepared: PreparedData,
    metric: str,
    policy: GatePolicy,
    feature_cache_dir: str,
) -> PromotionDecision:
    """Compares the winner with the champion on test images neither trained on, and decides."""
    logger = get_run_logger()
    candidate_score = score(test_metrics, "test", metric)
    heads = joblib.load(winner.heads_path)
    champion = version_for_alias(MlflowClient(), model_name, alias)
    if champion is None:
        return decide(candidate_score, policy)
    version = str(champion.version)
    changes = contract_changes(version_contract(model_name, version), {a: list(h.classes_) for a, h in heads.items()})
    if changes:
        logger.warning("v%s changes the contract: %s", version, "; ".join(changes))
        return decide(candidate_score, policy, version, changes=changes)
    test = _unseen_test_images(prepared, _seen_by(champion.run_id))
    logger.info("Comparing with champion v%s on %d test images neither trained on", version, len(test))
    if test.empty:
        return decide(candidate_score, policy, version)
    classifier: VehicleClassifier = (
        mlflow.pyfunc.load_model(f"models:/{model_name}/{version}").unwrap_python_model().classifier
    )
    champion_X = _champion_features(model_name, version, classifier, test, prepared, feature_cache_dir)
    ys = {a: test[a].to_numpy(dtype=str) for a in prepared.attributes}
    comparison = paired_bootstrap(
        _probabilities(heads, np.stack(test["X"])), _probabilities(classifier.heads, champion_X), ys, metric, policy
    )
    decision = decide(candidate_score, policy, version, comparison, images=len(test))
    logger.info("Gate: %s", decision.reason)
    return decision


def _seen_by(run_id: str) -> set[str]:
    """Content hashes a version trained and selected on (train + validation); empty if unrecorded."""
    try:
        recorded = mlflow.artifacts.load_dict(f"runs:/{run_id}/{TRAINING_IMAGES_ARTIFACT}")
    except (MlflowException, OSError):  # versions registered before this artifact existed
        get_run_logger().warning("The champion has no %s; comparing on the whole test split", TRAINING_IMAGES_ARTIFACT)
        return set()
    return set(recorded["train"]) | set(recorded["validation"])


def _unseen_test_images(prepared: PreparedData, seen: set[str]) -> pd.DataFrame:
    """This run's test images (one row per content) the champion never saw, with their features."""
    with np.load(prepared.features) as data:
        shas, X = data["sha_test"], data["X_test"]
    manifest = pd.read_csv(prepared.manifest, dtype=str)
    manifest = manifest[manifest[SPLIT_COLUMN] == "test"].drop_duplicates(SHA_COLUMN).set_index(SHA_COLUMN)
    keep = [i for i, sha in enumerate(shas) if sha not in seen]
    rows = manifest.loc[[shas[i] for i in keep], [IMAGE_COLUMN, *prepared.attributes]].reset_index()
    rows["X"] = [X[i] for i in keep]
    return rows.drop_duplicates(SHA_COLUMN).reset_index(drop=True)


def _champion_features(
    model_name: str,
    version: str,
    classifier: VehicleClassifier,
    test: pd.DataFrame,
    prepared: PreparedData,
    feature_cache_dir: str,
) -> np.ndarray:
    """The champion's features from its own featurizer: the logged version decides, not this code's."""
    logged = version_featurizer(model_name, version)
    if logged == prepared.featurizer_version:
        return np.stack(test["X"])
    get_run_logger().info("Champion v%s used featurizer %s; re-featurizing the shared images with it", version, logged)
    cache = FeatureCache(feature_cache_dir, logged or f"unrecorded-v{version}")
    return features_from(cache, list(test[SHA_COLUMN]), list(test[IMAGE_COLUMN]), classifier.featurizer.transform_paths)


def _probabilities(heads, X: np.ndarray) -> Probabilities:
    return {attribute: (list(map(str, head.classes_)), head.predict_proba(X)) for attribute, head in heads.items()}


@task(name="register-model", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def register_task(
    winner: CandidateResult,
    test_metrics: dict[str, float],
    parent_run_id: str,
    model_name: str,
    prepared: PreparedData,
    tags: dict[str, str],
) -> str:
    """Logs the winner as one self-contained pyfunc on the parent run, with its decision policy
    and the content hashes of every image per split (the gate needs what each version trained
    on), and registers it."""
    featurizer = Featurizer(precision=prepared.precision)
    policy = DecisionPolicy.from_json(Path(winner.decisions_path).read_text()) if winner.decisions_path else None
    classifier = VehicleClassifier(featurizer=featurizer, heads=joblib.load(winner.heads_path), policy=policy)
    manifest = pd.read_csv(prepared.manifest, dtype=str)
    images = {split: sorted(set(rows[SHA_COLUMN])) for split, rows in manifest.groupby(SPLIT_COLUMN)}
    with within_run(parent_run_id):
        mlflow.log_dict({"fingerprint": prepared.fingerprint, **images}, TRAINING_IMAGES_ARTIFACT)
        info = log_classifier(classifier, metadata={CANDIDATE: winner.name, METRICS: test_metrics})
    # "pending" until the gate's decision is recorded: a run killed in between leaves a version that says so.
    version_tags = {
        CANDIDATE_TAG: winner.name,
        DECISION_TAG: "pending",
        FINGERPRINT_TAG: prepared.fingerprint,
        FEATURIZER_TAG: prepared.featurizer_version,
        DATASET_TAG: prepared.source,
        IMAGES_TAG: str(len(manifest)),
        **tags,
        **{k: f"{v:.6f}" for k, v in test_metrics.items()},
    }
    version = register_version(info.model_uri, model_name, version_tags)
    get_run_logger().info("Registered %s version %s (%s)", model_name, version.version, winner.name)
    return str(version.version)


@task(name="move-aliases", retries=MLFLOW_RETRIES, retry_delay_seconds=MLFLOW_RETRY_DELAY)
def promote_task(model_name: str, alias: str, version: str, decision: PromotionDecision, parent_run_id: str) -> None:
    """Moves the aliases per the gate, logs the gate's numbers and emits ``vehicle.model.promoted``."""
    apply_decision(MlflowClient(), model_name, version, decision, alias)
    if decision.comparison is not None:
        c = decision.comparison
        for key, value in {
            "gate.images": c.images,
            "gate.gain": c.gain,
            "gate.ci_low": c.ci_low,
            "gate.ci_high": c.ci_high,
        }.items():
            MlflowClient().log_metric(parent_run_id, key, float(value))
    logger = get_run_logger()
    if decision.promote:
        emit_event(
            event="vehicle.model.promoted",
            resource={
                "prefect.resource.id": f"mlflow.model-version.{model_name}.{version}",
                "prefect.resource.name": model_name,
            },
            payload={
                "version": version,
                "previous_champion": decision.champion_version,
                "candidate_score": decision.candidate_score,
                "champion_score": decision.champion_score,
                "reason": decision.reason,
            },
        )
        logger.info("Promoted %s v%s to champion: %s", model_name, version, decision.reason)
    else:
        logger.info("Kept champion v%s; v%s is challenger: %s", decision.champion_version, version, decision.reason)
