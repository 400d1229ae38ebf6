"""MLflow tracking steps: one experiment per store, the parent run with its dataset, run links."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.exceptions import MlflowException

from tasks.data.prepare_steps import PreparedData
from vehicle_model.metadata import DATASET_TAG, FEATURIZER_TAG

# Tasks that write to the tracking store or the registry retry: a locked SQLite file or a
# tracking server that blinks must not cost a whole training run. Each of them is safe to
# repeat (the gate re-reads the aliases it moves).
MLFLOW_RETRIES = 2
MLFLOW_RETRY_DELAY = 2

# Tags of the runs alone; those a registered version carries too are in vehicle_model.metadata.
RUN_FINGERPRINT_TAG = "dataset.fingerprint"  # the data snapshot's fingerprint
STAGE_TAG = "stage"  # pipeline or candidate


def ensure_experiment(name: str, artifact_root: str | None) -> str:
    """Creates the experiment once and returns its id.

    Worker processes receive the id instead of calling ``set_experiment`` themselves:
    several processes creating the same experiment race into experiment 0.
    """
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = Path(artifact_root).resolve().as_uri() if artifact_root else None
    try:
        # Model development, not GenAI: the MLflow UI then opens on the runs table.
        return client.create_experiment(
            name, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"}
        )
    except MlflowException:
        # Another flow run created it between our lookup and our create.
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


def use_tracking_store(uri: str) -> None:
    """Points MLflow at ``uri``, creating the folder of a local SQLite file first."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)


def local_artifact_root(tracking_uri: str, artifact_root: str) -> str | None:
    """Artifacts go under ``mlruns/`` for a local SQLite store; a server decides its own."""
    return artifact_root if tracking_uri.startswith("sqlite:") else None


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` for local changes), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


@dataclass(frozen=True)
class ParentRun:
    """The pipeline's MLflow run that candidate runs hang under."""

    experiment_id: str
    run_id: str
    url: str


@contextmanager
def parent_run(
    experiment: str,
    artifact_root: str | None,
    ui_url: str,
    run_name: str,
    tags: dict[str, str],
    prepared: PreparedData,
) -> Iterator[ParentRun]:
    """Opens the pipeline run (FAILED if the body raises), tagged, with the dataset logged as its input.

    Args:
        experiment: experiment name (created once).
        artifact_root: artifact location for a local store, else None.
        ui_url: MLflow UI base URL for links.
        run_name: shown in the MLflow UI (the Prefect flow run's name).
        tags: run tags (Prefect ids, git commit).
        prepared: the ``PreparedData`` the run trains on.
    """
    experiment_id = ensure_experiment(experiment, artifact_root)
    tags = {
        **tags,
        "git_commit": git_commit(),
        RUN_FINGERPRINT_TAG: prepared.fingerprint,
        DATASET_TAG: prepared.source,
        FEATURIZER_TAG: prepared.featurizer_version,
        STAGE_TAG: "pipeline",
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        log_dataset(prepared)
        yield ParentRun(experiment_id, run.info.run_id, run_url(ui_url, experiment_id, run.info.run_id))


def log_dataset(prepared: PreparedData) -> None:
    """The split manifest as an MLflow dataset input, and the split sizes as parameters.

    The input's source is the dataset's absolute ``file://`` URI.
    """
    frame = pd.read_csv(prepared.manifest)
    # A source given as a string is matched against every registered kind, and a local path
    # matches MLflow's two local ones (schemes "" and "file"), which warns; a source object
    # is taken as it is.
    source = LocalArtifactDatasetSource(Path(prepared.source).resolve().as_uri())
    dataset = mlflow.data.from_pandas(frame, source=source, name=f"vehicles-{prepared.fingerprint[:12]}")
    mlflow.log_input(dataset, context="training")
    mlflow.log_params(
        {"dataset.fingerprint": prepared.fingerprint, **{f"dataset.{k}": v for k, v in prepared.counts.items()}}
    )


@contextmanager
def within_run(run_id: str) -> Iterator[None]:
    """Makes ``run_id`` the active run, reusing it when this thread already has it open."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id):
        yield
