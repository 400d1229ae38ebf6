"""Receipts: what each answer said, kept for the feedback window so feedback can be checked.

Every answered image leaves one receipt under ``<prefix>:receipt:<item id>`` (the request id,
or ``<request id>:<index>`` for a batch item) in the Redis-or-memory store, expiring after
``FEEDBACK_WINDOW_SECONDS``. It names the client (feedback from anyone else is refused as if
the id did not exist), the model version and what it predicted, the classes each attribute
accepts, and whether the image was kept for review. The first answer under an id owns its
receipt (one ``SET NX``): a client reusing another's request id cannot take over its feedback.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any

from serving.storage.stores import ResilientStore


@dataclass(frozen=True)
class Receipt:
    """One answered image.

    Attributes:
        item_id: the request id, or ``<request id>:<index>`` for a batch item.
        client: who asked (``anonymous`` without client keys).
        region: the ``X-Region`` of the request.
        model: registered model name.
        version: the version that answered.
        time: when it answered (Unix seconds).
        predictions: attribute -> ``{"label", "probability", "decision"?, "margin"}``.
        classes: attribute -> the classes the version can answer (what feedback may say).
        kept: the image was kept for review, so a label can become a training example.
        uniform: kept in the uniform share (an unbiased sample of all answers).
    """

    item_id: str
    client: str
    region: str
    model: str
    version: str
    time: float
    predictions: dict[str, dict[str, Any]]
    classes: dict[str, list[str]]
    kept: bool = False
    uniform: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Receipt:
        return cls(**json.loads(raw))


class ReceiptBook:
    """Receipts in the Redis-or-memory store, with a time to live.

    Args:
        store: the ``receipt`` namespace of the app's resilient store.
        ttl_seconds: the feedback window.
    """

    def __init__(self, store: ResilientStore, ttl_seconds: int) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds

    async def claim(self, receipt: Receipt) -> bool:
        """Writes ``receipt`` unless its id already has one; False then (nothing written)."""
        return await self.store.add(receipt.item_id, receipt.to_json(), expires_in=self.ttl_seconds)

    async def amend(self, receipt: Receipt) -> None:
        """Overwrites a claimed receipt (the image it promised to keep was dropped)."""
        await self.store.set(receipt.item_id, receipt.to_json(), expires_in=self.ttl_seconds)

    async def find(self, item_id: str, client: str) -> Receipt | None:
        """The receipt, or None when absent, expired or another client's.

        Raises RedisUnavailable when memory misses and Redis could not be asked.
        """
        raw = await self.store.lookup(item_id)
        if raw is None:
            return None
        receipt = Receipt.from_json(raw)
        return receipt if hmac.compare_digest(receipt.client, client) else None
