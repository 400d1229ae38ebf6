"""One Prefect test harness per session; per-test MLflow stores and data folders."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(prefect_server: str) -> str:
    """Every flow test runs against the session's Prefect server."""
    return prefect_server


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared across flow tests: the same images are featurized once per session."""
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture
def pipeline_env(tmp_path: Path, mlflow_store: str, feature_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the pipeline settings at temp folders and the per-test MLflow store.

    Candidates run on the thread runner here so a test can register an extra (failing)
    candidate in-process; the process pool is exercised by the e2e CLI test.
    """
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIPELINE_PREPARED_DIR", str(tmp_path / "prepared"))
    monkeypatch.setenv("PIPELINE_FEATURE_CACHE_DIR", str(feature_cache))
    monkeypatch.setenv("PIPELINE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("PIPELINE_TASK_RUNNER", "thread")
    monkeypatch.setenv("PIPELINE_GATE_MIN_IMAGES", "5")  # the tiny set has ~13 test images
    monkeypatch.delenv("PIPELINE_TRAINING_DATA", raising=False)
    return tmp_path
