"""One throwaway sandbox per test module; every process started in it is stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, _migrated_mlflow_db: Path) -> Iterator[Sandbox]:
    box = Sandbox.create(tmp_path_factory.mktemp("e2e"), _migrated_mlflow_db)
    try:
        yield box
    finally:
        box.close()
