"""Shared by the learning-loop tests (imported as a module: this folder is on sys.path)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from feedback.store import LabelStore
from serving.settings import ServingSettings

FEEDBACK = "/api/vehicle/feedback"
QUEUE = "/api/labels/queue"


@contextmanager
def label_store(settings: ServingSettings) -> Iterator[LabelStore]:
    """The label store the app wrote to, opened the way the CLI and the flows open it."""
    store = LabelStore(settings.labels_database_url)
    try:
        yield store
    finally:
        store.close()


def png_body(data: bytes, region: str | None = None, **headers: str) -> dict:
    """``client.post`` arguments sending ``data`` as a raw PNG body (from ``region`` when given)."""
    region_header = {"X-Region": region} if region else {}
    return {"content": data, "headers": {"Content-Type": "image/png", **region_header, **headers}}


async def queued(client, count: int, **params: str) -> dict:
    """The queue once it lists ``count`` items: kept images are written on a thread after the answer."""
    for _ in range(200):
        body = (await client.get(QUEUE, params=params)).json()
        if len(body["items"]) >= count:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the queue never listed {count} items: {body}")


async def drifted(client, regions: list[str]) -> None:
    """Waits until the app has read ``regions`` as drifted (it re-reads every REVIEW_REFRESH_SECONDS)."""
    for _ in range(200):
        body = (await client.get(QUEUE)).json()
        if body["drifted_regions"] == regions:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the app never read {regions} as drifted: {body['drifted_regions']}")
