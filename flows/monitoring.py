"""Flow: read the prediction log → compare each region with the serving version's reference,
and score it on the labels given so far → MLflow run + Prefect artifact → status for the stats
endpoint → events on drift, on a drop in online accuracy, on labels ready to harvest."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime

from prefect import flow
from prefect.runtime import flow_run

from flows.monitor_settings import MonitorSettings, get_monitor_settings
from tasks.monitoring.drift import Thresholds
from tasks.monitoring.drift_steps import (
    detect_drift_task,
    load_reference_task,
    publish_task,
    read_log_task,
    require_redis,
    track_task,
)
from tasks.monitoring.online_steps import online_accuracy_task, publish_online_task
from tasks.monitoring.summary import DriftSummary, drifted_regions
from tasks.tracking import local_artifact_root, use_tracking_store


@flow(name="monitor-drift", log_prints=True)
def monitor_drift(
    window_minutes: float | None = None,
    min_records: int | None = None,
    p_value: float | None = None,
    min_effect: float | None = None,
    feature_share: float | None = None,
) -> DriftSummary:
    """Compares recent predictions, overall and per region, with the serving version's reference,
    and scores the version on the labels clients and reviewers gave (online accuracy).

    Args:
        window_minutes: read the records of the last N minutes; by default, every record
            since the previous run (the checkpoint; the last hour on a first run).
        min_records: fewest records a region needs to be examined (default MONITOR_MIN_RECORDS).
        p_value: significance level of each test (default MONITOR_P_VALUE).
        min_effect: smallest score that counts as drift (default MONITOR_MIN_EFFECT).
        feature_share: share of projected feature columns that must drift (default MONITOR_FEATURE_SHARE).
    """
    settings = get_monitor_settings()
    require_redis(settings.redis_url)
    thresholds = _thresholds(settings, min_records, p_value, min_effect, feature_share)
    use_tracking_store(settings.mlflow_tracking_uri)
    now = time.time()
    version, reference = load_reference_task(settings.model_name, settings.model_alias)
    window = read_log_task(settings.redis_url, settings.redis_key_prefix, now, window_minutes, settings.max_records)
    regions, too_few, compared = detect_drift_task(reference, window.records, version, thresholds)
    online = online_accuracy_task(
        settings.labels_database_url, settings.model_name, version, settings.harvest_min_labels
    )
    summary = DriftSummary(
        model=settings.model_name,
        version=version,
        window_start=_iso(_start_seconds(window.records, now, window_minutes)),
        window_end=_iso(now),
        records=len(window.records),
        compared=compared,
        regions=regions,
        too_few=too_few,
        thresholds=asdict(thresholds),
        drifted_regions=drifted_regions(regions),
        online_accuracy=online.regions,
        online_basis=online.basis,
        accuracy_dropped=online.dropped,
        labels_ready=online.ready,
    )
    tags = {
        "prefect.flow_run_id": str(flow_run.get_id()),
        "model_version": version,
        "drift": str(summary.drift).lower(),
    }
    artifact_root = local_artifact_root(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    run = track_task(
        summary, reference, window.records, tags, settings.experiment, artifact_root, settings.mlflow_ui_url
    )
    summary.mlflow_run_id = run.run_id
    checkpoint = window.last_id if window_minutes is None else None
    publish_task(summary, run, settings.redis_url, settings.redis_key_prefix, checkpoint)
    publish_online_task(summary)
    return summary


def _thresholds(settings: MonitorSettings, min_records, p_value, min_effect, feature_share) -> Thresholds:
    """The settings' thresholds, with any given parameter taking precedence."""
    overrides = {
        "min_records": min_records,
        "p_value": p_value,
        "min_effect": min_effect,
        "feature_share": feature_share,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    return MonitorSettings(**given).thresholds() if given else settings.thresholds()


def _start_seconds(records: list[dict], now: float, window_minutes: float | None) -> float:
    if window_minutes is not None:
        return now - window_minutes * 60
    return min((float(r["time"]) for r in records), default=now)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
