"""Appending shadow pairs to the capped Redis stream every replica shares.

The worker thread hands over encoded pairs (``add``: a deque append, no I/O); a background
task on the event loop appends them in one pipelined ``XADD ... MAXLEN ~`` per flush through the
shared Redis circuit breaker, as the prediction log does. While Redis is away pairs are dropped
and counted (``redis_unavailable``), never retried: the report needs many pairs, not these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence

from feedback.shadow import PAIR_FIELD, Pair, shadow_key
from serving.shadow.metrics import ShadowMetrics
from serving.storage.stores import RedisGuard, RedisUnavailable

logger = logging.getLogger("serving.shadow")
FLUSH_SECONDS = 0.5
CAPACITY = 10_000  # pairs waiting for a flush; beyond it (Redis slower than traffic) they are dropped


class PairWriter:
    """Pairs waiting for Redis, and the task that writes them.

    Args:
        guard: the shared Redis circuit breaker.
        prefix: the deployment's Redis key prefix (the stream is ``<prefix>:shadow``).
        metrics: pairs written and dropped.
        maxlen: approximate cap of the stream (``XADD MAXLEN ~``).
        flush_seconds: how often the background task writes.
        capacity: most pairs waiting between two flushes.
    """

    def __init__(
        self,
        guard: RedisGuard,
        prefix: str,
        metrics: ShadowMetrics,
        maxlen: int,
        flush_seconds: float = FLUSH_SECONDS,
        capacity: int = CAPACITY,
    ) -> None:
        self.guard = guard
        self.key = shadow_key(prefix)
        self.metrics = metrics
        self.maxlen = maxlen
        self.flush_seconds = flush_seconds
        self.capacity = capacity
        self._pending: deque[str] = deque()
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()

    def add(self, pairs: Sequence[Pair]) -> None:
        """Encodes ``pairs`` (on the caller's thread) and queues them; returns at once."""
        room = max(0, self.capacity - len(self._pending))
        if len(pairs) > room:
            self.metrics.dropped.labels("queue_full").inc(len(pairs) - room)
        self._pending.extend(pair.to_json() for pair in pairs[:room])

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="shadow-writer")

    async def stop(self) -> None:
        """Lets the task finish the flush it is in, then writes what is left."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_seconds):
                    await self._stopping.wait()
            try:
                await self.flush()
            except Exception:  # a bug here must not stop the writer for good
                logger.exception("writing shadow pairs failed")

    async def flush(self) -> int:
        """Appends every waiting pair; returns how many were written."""
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        if not batch:
            return 0

        async def append(redis) -> None:
            async with redis.pipeline(transaction=False) as pipe:
                for pair in batch:
                    pipe.xadd(self.key, {PAIR_FIELD: pair}, maxlen=self.maxlen, approximate=True)
                await pipe.execute()

        try:
            await self.guard.run(append)
        except RedisUnavailable:
            self.metrics.dropped.labels("redis_unavailable").inc(len(batch))
            return 0
        except Exception:
            self.metrics.dropped.labels("failed").inc(len(batch))
            raise
        self.metrics.pairs.inc(len(batch))
        return len(batch)
