"""One throwaway sandbox per test module, on the session's Prefect server and feature cache;
every process started in one is stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Sandbox


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for every sandbox: features are keyed by image content and featurizer version."""
    return tmp_path_factory.mktemp("e2e-features")


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, _migrated_mlflow_db: Path, feature_cache: Path, prefect_server: str
) -> Iterator[Sandbox]:
    """An empty MLflow store; commands use the session's Prefect server."""
    box = Sandbox.create(
        tmp_path_factory.mktemp("e2e"), _migrated_mlflow_db, feature_cache=feature_cache, prefect_api_url=prefect_server
    )
    try:
        yield box
    finally:
        box.close()
