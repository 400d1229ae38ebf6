"""The prediction log: sampled records of classified images in a capped Redis stream.

The drift monitor (``flows/monitoring.py``) reads the stream and compares it, region by
region, with the serving version's reference sample. Records use the shared format of
``vehicle_model.records`` (labels, top probabilities, decisions, the projected embedding), so
monitoring can also watch the share of answers that are not confident.

Writing never slows or fails a request: ``submit`` only samples and appends to a bounded
queue (no I/O, no await, no exception); a background task builds the records and appends them
in one pipelined ``XADD ... MAXLEN ~`` per batch through the shared Redis circuit breaker.
While Redis is away (or not configured) batches are dropped and counted in
``vehicle_prediction_log_dropped_total``, as are records that find the queue full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter

from serving.storage.stores import RedisGuard, RedisUnavailable
from vehicle_model.records import RECORD_FIELD, Prediction, encode, log_key, prediction_record

logger = logging.getLogger("serving.prediction_log")


@dataclass(frozen=True)
class _Pending:
    time: float
    region: str
    model: str
    version: str
    prediction: Prediction
    projection: np.ndarray


class PredictionLog:
    """Samples classified images into the log, writing off the request path.

    Args:
        guard: the shared Redis circuit breaker.
        prefix: the deployment's Redis key prefix (the stream is ``<prefix>:predictions``).
        written: counter of records appended.
        dropped: counter of records lost, by ``reason`` (``redis_unavailable``, ``queue_full``).
        sample_rate: share of classified images logged (1 = all).
        max_per_second: most records logged per second (0 = no cap); the excess is not sampled.
        maxlen: approximate cap of the stream (``XADD MAXLEN ~``).
        queue_size: records held in memory between two flushes.
        flush_seconds: how often the background task writes.
    """

    def __init__(
        self,
        guard: RedisGuard,
        prefix: str,
        written: Counter,
        dropped: Counter,
        *,
        sample_rate: float = 1.0,
        max_per_second: float = 0.0,
        maxlen: int = 100_000,
        queue_size: int = 10_000,
        flush_seconds: float = 0.5,
    ) -> None:
        self.guard = guard
        self.key = log_key(prefix)
        self.written = written
        self.dropped = dropped
        self.sample_rate = sample_rate
        self.max_per_second = max_per_second
        self.maxlen = maxlen
        self.flush_seconds = flush_seconds
        self._queue: deque[_Pending] = deque()
        self._queue_size = queue_size
        self._tokens = max_per_second
        self._refilled = time.monotonic()
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def submit(
        self, model: str, version: str, region: str, predictions: Sequence[Prediction], projections: np.ndarray
    ) -> None:
        """Queues the sampled share of one inference call's results; returns at once."""
        now = time.time()
        for prediction, projection in zip(predictions, projections):
            if not self._sampled():
                continue
            if len(self._queue) >= self._queue_size:
                self.dropped.labels("queue_full").inc()
                continue
            self._queue.append(_Pending(now, region, model, version, prediction, projection))
        if len(self._queue) >= 256:
            self._wake.set()

    def _sampled(self) -> bool:
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return False
        if self.max_per_second <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.max_per_second, self._tokens + (now - self._refilled) * self.max_per_second)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="prediction-log")

    async def stop(self) -> None:
        """Lets the writer finish the flush it is in and stop, then writes what is left.

        The writer is asked to stop, not cancelled: a cancel in the middle of a flush lost the
        records it had taken off the queue, and on Python 3.11 a cancel landing just as a burst
        woke the writer was swallowed by ``asyncio.wait_for``, so the writer never ended and
        shutdown hung. A flush is bounded by the Redis timeouts, so the stop is too.
        """
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a bug here must not stop the writer for good
                logger.exception("prediction log flush failed")

    async def flush(self) -> int:
        """Writes every queued record; returns how many were written."""
        batch = [self._queue.popleft() for _ in range(len(self._queue))]
        if not batch:
            return 0
        records = [
            encode(
                prediction_record(
                    p.prediction, p.projection, region=p.region, model=p.model, version=p.version, time=p.time
                )
            )
            for p in batch
        ]

        async def append(redis) -> None:
            async with redis.pipeline(transaction=False) as pipe:
                for record in records:
                    pipe.xadd(self.key, {RECORD_FIELD: record}, maxlen=self.maxlen, approximate=True)
                await pipe.execute()

        try:
            await self.guard.run(append)
        except RedisUnavailable:
            self.dropped.labels("redis_unavailable").inc(len(records))
            return 0
        self.written.inc(len(records))
        return len(records)
