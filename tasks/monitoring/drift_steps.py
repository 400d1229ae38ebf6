"""Prefect tasks of the drift monitor: thin wrappers that add Redis, MLflow, artifacts and events.

Record lists are large task inputs, so none of these tasks hashes its inputs for a cache key.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from redis import Redis

from tasks.monitoring.drift import ALL, Thresholds, detect, records_frame
from tasks.monitoring.log_reader import LogWindow, publish_status, read_log, save_checkpoint
from tasks.monitoring.online import online_metrics
from tasks.monitoring.reference import load_reference
from tasks.monitoring.report import html_report, markdown_report
from tasks.monitoring.summary import DriftSummary, TrackedRun
from tasks.registry.versions import version_for_alias
from tasks.tracking import ensure_experiment, run_url

DRIFT_EVENT = "vehicle.drift.detected"


def require_redis(url: str | None) -> str:
    """The Redis URL; raises a clear error when it is not configured."""
    if not url:
        raise ValueError(
            "REDIS_URL is not set: the prediction log lives in the serving app's Redis; "
            "set REDIS_URL (and REDIS_KEY_PREFIX) to the values serving uses"
        )
    return url


def redis_client(url: str | None) -> Redis:
    return Redis.from_url(require_redis(url), socket_timeout=10, socket_connect_timeout=5)


@task(name="load-reference")
def load_reference_task(model_name: str, alias: str) -> tuple[str, list[dict]]:
    """The serving version (behind ``alias``) and its reference records."""
    client = MlflowClient()
    current = version_for_alias(client, model_name, alias)
    if current is None:
        raise LookupError(f"no {model_name}@{alias} in the registry: run `vehicles train` first")
    records = load_reference(client, model_name, str(current.version))
    get_run_logger().info("Comparing with %s v%s: %d reference records", model_name, current.version, len(records))
    return str(current.version), records


@task(name="read-prediction-log", cache_policy=NO_CACHE)
def read_log_task(
    redis_url: str | None, prefix: str, now: float, window_minutes: float | None, max_records: int
) -> LogWindow:
    window = read_log(redis_client(redis_url), prefix, now, window_minutes, max_records)
    get_run_logger().info("Read %d prediction records", len(window.records))
    return window


@task(name="detect-drift", cache_policy=NO_CACHE)
def detect_drift_task(
    reference: list[dict], records: list[dict], version: str, thresholds: Thresholds
) -> tuple[dict[str, dict], dict[str, int], int]:
    """Region -> result and the regions with too few records, over ``version``'s records only."""
    current = [r for r in records if str(r["version"]) == version]
    results, too_few = detect(records_frame(reference), records_frame(current), thresholds)
    return {region: result.as_dict() for region, result in results.items()}, too_few, len(current)


@task(name="track-drift", cache_policy=NO_CACHE)
def track_task(
    summary: DriftSummary,
    reference: list[dict],
    records: list[dict],
    tags: dict[str, str],
    experiment: str,
    artifact_root: str | None,
    ui_url: str,
) -> TrackedRun:
    """One MLflow run: scores as metrics (charted over runs), the HTML report and JSON as artifacts.

    Args:
        summary: the run's result.
        reference: the reference records, for the HTML report's label shares.
        records: the records read.
        tags: run tags (Prefect flow run id, version, drift).
        experiment: the monitoring experiment (``MONITOR_EXPERIMENT``), created once.
        artifact_root: artifact location for a local store, else None.
        ui_url: MLflow UI base URL, for the run's link.
    """
    experiment_id = ensure_experiment(experiment, artifact_root)
    MlflowClient().set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_params(
            {
                "model": summary.model,
                "version": summary.version,
                **summary.thresholds,
                "window_start": summary.window_start,
                "window_end": summary.window_end,
            }
        )
        mlflow.log_metrics(_metrics(summary))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "drift_report.html"
            path.write_text(html_report(summary, reference, records), encoding="utf-8")
            mlflow.log_artifact(str(path))
        mlflow.log_dict(summary.as_dict(), "drift.json")
        return TrackedRun(experiment, run.info.run_id, run_url(ui_url, experiment_id, run.info.run_id))


@task(name="publish-drift", cache_policy=NO_CACHE)
def publish_task(
    summary: DriftSummary, run: TrackedRun, redis_url: str | None, prefix: str, checkpoint: str | None
) -> None:
    """The markdown artifact, each region's status for the stats endpoint, the event on drift,
    and (for checkpointed runs) the checkpoint, last, so a failed run is read again."""
    create_markdown_artifact(key="drift-report", markdown=markdown_report(summary, run), description="Drift per region")
    redis = redis_client(redis_url)
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    publish_status(
        redis,
        prefix,
        {
            region: {
                "drift": result["drift"],
                "drifted": result["drifted"],
                "records": result["records"],
                "version": summary.version,
                "checked_at": checked_at,
            }
            for region, result in summary.regions.items()
        },
    )
    logger = get_run_logger()
    if summary.drift:
        emit_event(
            event=DRIFT_EVENT,
            resource={
                "prefect.resource.id": f"vehicle.monitoring.{summary.model}",
                "prefect.resource.name": summary.model,
            },
            payload={
                "model": summary.model,
                "version": summary.version,
                "regions": summary.drifted_regions,
                "drifted": {
                    r: summary.regions[r]["drifted"] for r in summary.drifted_regions + [ALL] if r in summary.regions
                },
                "scores": {
                    r: summary.regions[r]["scores"] for r in summary.drifted_regions + [ALL] if r in summary.regions
                },
                "window_start": summary.window_start,
                "window_end": summary.window_end,
                "mlflow_run_id": summary.mlflow_run_id,
            },
        )
        logger.warning("Drift in %s; emitted %s", ", ".join(summary.drifted_regions), DRIFT_EVENT)
    else:
        logger.info("No drift in %d examined regions", len(summary.regions))
    if checkpoint:
        save_checkpoint(redis, prefix, checkpoint)


def _metrics(summary: DriftSummary) -> dict[str, float]:
    metrics: dict[str, float] = {
        "records": summary.records,
        "compared": summary.compared,
        "drifted_regions": len(summary.drifted_regions),
    }
    for region, result in summary.regions.items():
        metrics[f"{region}.records"] = result["records"]
        metrics[f"{region}.drift"] = float(result["drift"])
        metrics.update({f"{region}.{name}": score for name, score in result["scores"].items()})
    return metrics | online_metrics(summary.online_accuracy)
