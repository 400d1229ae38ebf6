"""One Prefect API for the whole run, including worker processes.

With no ``PREFECT_API_URL`` Prefect starts a temporary server per process, so every
process-pool worker would pay its own server start (~10-20 s here). Starting one here
and exporting its URL lets the workers, which inherit the environment, share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """Yields the API URL in use, starting a local temporary server if none is configured."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = get_current_settings().api.url
    if configured:
        yield str(configured)
        return
    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        _drain_workers()
        server.stop()


def _drain_workers() -> None:
    """Flushes queued logs and events while the server is still up (else exit retries for a minute)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    try:
        APILogWorker.drain_all(timeout=10)
    except RuntimeError:
        pass
    EventsWorker.drain_all(timeout=10)
