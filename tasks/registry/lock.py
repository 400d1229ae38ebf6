"""One writer at a time on a model's aliases: a Prefect global concurrency limit of one slot."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound


@contextmanager
def registry_lock(model_name: str, timeout_seconds: float = 1800) -> Iterator[None]:
    """Serialises alias moves (flow runs, ``vehicles promote``/``rollback``) with a Prefect
    global concurrency limit.

    The limit (one slot) is created on first use; ``strict`` makes a missing limit an error
    rather than a silent no-op.
    """
    name = f"model-registry-{model_name}"
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
