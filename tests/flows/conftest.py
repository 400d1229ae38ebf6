"""Every flow test runs on the session's Prefect server; stores and folders come from tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(prefect_server: str) -> str:
    """Every flow test runs against the session's Prefect server."""
    return prefect_server
