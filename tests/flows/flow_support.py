"""What the flow tests share: a training run at test size, datasets cut from the tiny one, and
reading back the Prefect artifacts and events a run published."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pandas as pd
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.worker import EventsWorker

from flows.training import TrainingSummary, train_pipeline
from tasks.registry.retrain import SkippedRun

MODEL = "vehicle-classifier"
# Below the cost of any grid point: each search tries exactly one, the same point every run,
# so two runs on the same data fit the same heads.
BUDGET = 0.001


def train(data: Path | None = None, **kwargs) -> TrainingSummary | SkippedRun:
    """``train_pipeline`` at test size: one grid point per search, no augmented copies.

    Without ``data`` the run reads the ``PIPELINE_TRAINING_DATA`` setting, as a schedule's does.
    """
    kwargs.setdefault("time_budget_seconds", BUDGET)
    kwargs.setdefault("augment_copies", 0)
    return train_pipeline(data=None if data is None else str(data), **kwargs)


def rows_of(dataset: Path, rows: slice, folder: Path) -> Path:
    """A dataset of ``dataset``'s ``rows`` (absolute image paths, no copies) in ``folder``."""
    folder.mkdir()
    frame = pd.read_csv(dataset / "labels.csv").iloc[rows]
    frame.assign(image=[str(dataset / p) for p in frame["image"]]).to_csv(folder / "labels.csv", index=False)
    return folder


def latest_artifact(key: str, flow_run_id: str | None = None) -> dict | list | str:
    """The data of the newest Prefect artifact with ``key``, of one flow run if given (else of
    the whole session: the tests run one at a time)."""
    artifact_filter = ArtifactFilter(
        key=ArtifactFilterKey(any_=[key]),
        flow_run_id=None if flow_run_id is None else ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]),
    )
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=artifact_filter)
    return sorted(artifacts, key=lambda a: a.created)[-1].data


def events(name: str, since: datetime, until: datetime | None = None, wait_for: int = 1, timeout: float = 30.0) -> list:
    """Events called ``name`` that occurred in [since, until] (until: now), waiting (bounded)
    until ``wait_for`` of them are stored: the server stores what it receives a moment later."""
    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout
    occurred = EventOccurredFilter(since=since, until=until or datetime.now(UTC))
    query = EventFilter(event=EventNameFilter(name=[name]), occurred=occurred)
    while True:
        with get_client(sync_client=True) as client:
            found = client.read_events(query, limit=50).events  # the server rejects the client's default of 100
        if len(found) >= wait_for or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def heads_folders(prepared: Path) -> list[Path]:
    """Fitted heads a run left behind (each run removes its own, failed or not)."""
    return list(prepared.rglob("heads-*"))
