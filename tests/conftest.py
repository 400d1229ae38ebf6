"""Shared fixtures: real images, a pre-migrated MLflow SQLite store copied per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.data.synthetic import generate_dataset

TESTS = Path(__file__).parent
# Each folder's tests carry its tier marker and no other, so `-m` selects a tier exactly.
TIER_OF_FOLDER = {
    "unit": {"unit"},
    "flows": {"flows"},
    "serving": {"serving"},
    "e2e": {"e2e"},
    "stack": {"stack", "images"},
}
TIERS = set().union(*TIER_OF_FOLDER.values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuses a test whose tier marker does not match its folder (a wrong marker hides it from its target)."""
    wrong = []
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        tiers = {mark.name for mark in item.iter_markers()} & TIERS
        if len(tiers) != 1 or not tiers <= TIER_OF_FOLDER.get(folder, set()):
            wrong.append(f"{item.nodeid}: {sorted(tiers) or 'no tier'} in tests/{folder}/")
    if wrong:
        raise pytest.UsageError("tier markers that do not match the folder:\n" + "\n".join(wrong))


def pytest_configure(config: pytest.Config) -> None:
    """Prefect state for the whole session lives in a throwaway home, with no telemetry."""
    import tempfile

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect API for the whole session: flows in this process use it through the harness's
    settings, processes a test starts (the CLI, workers) through ``PREFECT_API_URL``."""
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(get_current_settings().api.url)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """84 synthetic images (12 per vehicle type, every colour present), CSV layout."""
    root = tmp_path_factory.mktemp("tiny")
    generate_dataset(root, n=84, seed=7)
    return root


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite tracking store migrated once per session (migrations cost seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", str(folder / "artifacts"))
    return db


@pytest.fixture
def mlflow_store(tmp_path: Path, _migrated_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh MLflow store for one test: a copy of the migrated DB, artifacts in tmp_path.

    Sets ``MLFLOW_TRACKING_URI`` (settings read it) and the active tracking URI.
    """
    import mlflow

    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copy(_migrated_mlflow_db, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(store / "artifacts"))
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the tests use; ``make test`` exports REDIS_TEST_URL (it starts one if needed)."""
    return os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")
