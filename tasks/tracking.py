"""MLflow tracking helpers: one experiment per store, parent/child runs, run links."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

# Tasks that write to the tracking store or the registry retry: a locked SQLite file or a
# tracking server that blinks must not cost a whole training run. Each of them is safe to
# repeat (the gate re-reads the aliases it moves).
MLFLOW_RETRIES = 2
MLFLOW_RETRY_DELAY = 2


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
        return client.create_experiment(name, artifact_location=location)
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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"




@contextmanager
def within_run(run_id: str) -> Iterator[None]:
    """Makes ``run_id`` the active run, reusing it when this thread already has it open."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id):
        yield
