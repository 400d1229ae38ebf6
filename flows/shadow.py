"""Flow: the pairs serving mirrored (champion and challenger on the same live images) and their
labels → the shadow report → MLflow run + Prefect artifact → promotion by evidence, if the policy allows."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from flows.monitor_settings import get_monitor_settings
from tasks.monitoring.shadow import ShadowRun
from tasks.monitoring.shadow_steps import (
    promote_on_evidence_task,
    publish_shadow_task,
    read_shadow_task,
    track_shadow_task,
)
from tasks.tracking import local_artifact_root, use_tracking_store


@flow(name="shadow-report", log_prints=True)
def report_shadow(auto_promote: bool | None = None) -> ShadowRun:
    """Compares the challenger serving mirrors traffic to with the champion: agreement per
    attribute, and on labelled pairs both accuracies with an exact McNemar test; promotes the
    challenger when that evidence says so and the policy lets a flow promote.

    Args:
        auto_promote: promote when the recommendation is ``promote``; default SHADOW_AUTO_PROMOTE.
    """
    settings = get_monitor_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    report, notes = read_shadow_task(
        settings.redis_url,
        settings.redis_key_prefix,
        settings.labels_database_url,
        settings.max_records,
        settings.shadow_alpha,
        settings.shadow_min_pairs,
    )
    artifact_root = local_artifact_root(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    tags = {"prefect.flow_run_id": str(flow_run.get_id()), "model": settings.model_name}
    run = track_shadow_task(report, tags, settings.experiment, artifact_root, settings.mlflow_ui_url)
    promotion = promote_on_evidence_task(
        report,
        run,
        settings.model_name,
        settings.model_alias,
        settings.shadow_alias,
        settings.shadow_auto_promote if auto_promote is None else auto_promote,
    )
    publish_shadow_task(report, run, promotion)
    return ShadowRun(report, run.run_id, promotion, tuple(notes))
