"""One writer at a time: a Prefect global concurrency limit of one slot, on a model's aliases or a harvest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound


def registry_lock(model_name: str, timeout_seconds: float = 1800) -> AbstractContextManager[None]:
    """Serialises alias moves (flow runs, ``vehicles promote``/``rollback``)."""
    return exclusive(f"model-registry-{model_name}", timeout_seconds)


@contextmanager
def exclusive(name: str, timeout_seconds: float = 1800) -> Iterator[None]:
    """Holds the Prefect global concurrency limit ``name`` (one slot) until the block ends.

    The limit is created on first use; ``strict`` makes a missing limit an error rather than a
    silent no-op.
    """
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass
    with concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_seconds):
        yield
