"""Throwaway sandboxes on the session's Prefect server and feature cache (tests/conftest.py);
every process started in one is stopped at teardown.

The session trains once with the real CLI (``trained``); modules that need a registered model
start from a copy of that store (``trained_sandbox``) instead of training their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import QUICK_CANDIDATES, QUICK_TRAINING, Sandbox, TrainedStore

TRAIN_TIMEOUT = 300
WINNER = re.compile(r"Winner (\w+) registered as version 1\b")


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


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, _migrated_mlflow_db: Path, feature_cache: Path, tiny_dataset: Path
) -> Iterator[TrainedStore]:
    """``vehicles train`` as a user runs it on a fresh checkout: the default process-pool runner
    and, with no ``PREFECT_API_URL``, Prefect's temporary local server, which the CLI starts and
    shares with its workers. Two quick candidates; version 1 is the winner, promoted.

    The suite's one CLI run on its own Prefect server; tests read its store or take a copy.
    """
    box = Sandbox.create(
        tmp_path_factory.mktemp("e2e-trained"), _migrated_mlflow_db, feature_cache=feature_cache, prefect_api_url=None
    )
    candidates = [option for name in QUICK_CANDIDATES for option in ("-c", name)]
    try:
        result = box.run(
            [box.command("vehicles"), "train", "--data", str(tiny_dataset), *candidates, *QUICK_TRAINING],
            timeout=TRAIN_TIMEOUT,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
        winner = WINNER.search(result.stdout)
        assert winner is not None, result.stdout
        yield TrainedStore(box, result, winner.group(1))
    finally:
        box.close()


@pytest.fixture(scope="module")
def trained_sandbox(
    tmp_path_factory: pytest.TempPathFactory, trained: TrainedStore, feature_cache: Path, prefect_server: str
) -> Iterator[Sandbox]:
    """A copy of the session's trained store (version 1 champion); commands use the session's
    Prefect server."""
    box = Sandbox.create(
        tmp_path_factory.mktemp("e2e"), trained.db, feature_cache=feature_cache, prefect_api_url=prefect_server
    )
    try:
        yield box
    finally:
        box.close()
