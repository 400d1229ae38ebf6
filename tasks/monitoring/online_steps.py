"""Prefect tasks of online accuracy in the monitoring run: the label store and the registry in,
events out. A missing or unreachable label store means no labels, never a failed monitor."""

from __future__ import annotations

from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from sqlalchemy.exc import SQLAlchemyError

from tasks.data.harvest_steps import existing_store
from tasks.monitoring.drift import ALL
from tasks.monitoring.online import OnlineAccuracy, accuracy_on_test, assess
from tasks.monitoring.summary import DriftSummary

ACCURACY_EVENT = "vehicle.accuracy.dropped"
LABELS_EVENT = "vehicle.labels.ready"


@task(name="online-accuracy", cache_policy=NO_CACHE)
def online_accuracy_task(labels_url: str, model_name: str, version: str, min_labels: int) -> OnlineAccuracy:
    """The serving version's accuracy on the labels given so far, against its test accuracy.

    Args:
        labels_url: the label store (``LABELS_DATABASE_URL``).
        model_name: the registered model, whose version tags hold the test accuracy.
        version: the serving version.
        min_labels: harvestable labels a region needs to be reported ready.
    """
    logger = get_run_logger()
    try:
        store = existing_store(labels_url)
        if store is None:
            logger.info("No label store at %s: no online accuracy yet", labels_url)
            return OnlineAccuracy()
        try:
            labels, harvestable = store.labelled_rows(), store.harvestable()
        finally:
            store.close()
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("Label store %s unreadable (%s): no online accuracy this run", labels_url, exc)
        return OnlineAccuracy()
    tags = MlflowClient().get_model_version(model_name, version).tags
    online = assess(labels, harvestable, version, accuracy_on_test(tags), min_labels)
    for attribute, numbers in online.regions.get(ALL, {}).items():
        logger.info(
            "Online %s accuracy of v%s: %.3f [%.3f, %.3f] from %d labels",
            attribute,
            version,
            numbers["accuracy"],
            numbers["low"],
            numbers["high"],
            numbers["labelled"],
        )
    return online


@task(name="publish-online-accuracy", cache_policy=NO_CACHE)
def publish_online_task(summary: DriftSummary) -> None:
    """Emits ``vehicle.accuracy.dropped`` for regions answering significantly worse than the
    version's test score, and ``vehicle.labels.ready`` for regions with enough labels to harvest."""
    logger = get_run_logger()
    resource = {"prefect.resource.id": f"vehicle.monitoring.{summary.model}", "prefect.resource.name": summary.model}
    context = {"model": summary.model, "version": summary.version, "mlflow_run_id": summary.mlflow_run_id}
    if summary.accuracy_dropped:
        regions = sorted({drop["region"] for drop in summary.accuracy_dropped})
        emit_event(
            event=ACCURACY_EVENT,
            resource=resource,
            payload={**context, "regions": regions, "drops": summary.accuracy_dropped},
        )
        logger.warning("Online accuracy dropped in %s; emitted %s", ", ".join(regions), ACCURACY_EVENT)
    if summary.labels_ready:
        emit_event(
            event=LABELS_EVENT,
            resource=resource,
            payload={**context, "regions": sorted(summary.labels_ready), "labels": summary.labels_ready},
        )
        logger.info("Reviewed labels ready to harvest: %s; emitted %s", summary.labels_ready, LABELS_EVENT)
