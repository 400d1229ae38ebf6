"""Per-region request counts, predicted-class distribution and decisions, in Redis hashes.

Layout under ``<prefix>:stats``: a set ``regions`` of region names and, per region, hashes
``region:<name>:requests`` (endpoint -> count), ``region:<name>:predictions``
(``attribute:label`` -> count) and ``region:<name>:decisions`` (``attribute:decision`` ->
count, so monitoring can watch the uncertain share), all updated with HINCRBY in one script.
A request only adds its increments in memory; a background task (``keep_flushing``) sends what
has accumulated, so under load one round trip carries many requests' counts and no request
waits for Redis. While
Redis is away the increments accumulate in memory and are flushed into Redis when it answers
again. Reads add what is not sent yet, so the numbers served are always exact: every batch of
counts has its id from the moment it starts to accumulate, the script that applies a batch
marks its id in the same step, and a read asks for the hashes and for those marks in one
transaction, then adds from memory exactly the batches Redis had not applied. A flush landing
during the read can neither hide a batch nor count it twice.

Each region's latest drift status is written by the drift monitor (``flows/monitoring.py``)
into the hash ``<prefix>:monitoring:drift`` (region -> JSON) and read here next to the counts.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from serving.storage.stores import RedisGuard, RedisUnavailable
from vehicle_model.decisions import DECISIONS
from vehicle_model.records import Prediction, as_text, drift_status_key

REGION_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEFAULT_REGION = "unknown"
OVERFLOW_REGION = "other"

Delta = tuple[str, str, str]  # (region, "requests" | "predictions" | "decisions", field)
COUNTED = ("predictions", "decisions")  # the kinds counted as attribute -> value -> count
# How long Redis remembers an applied batch id: far longer than any retry of that batch.
BATCH_ID_TTL_SECONDS = 86_400
APPLY_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  for i = 2, #ARGV, 4 do
    redis.call('SADD', KEYS[2], ARGV[i])
    redis.call('HINCRBY', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
  end
  return 1
end
return 0
"""


@dataclass
class RegionSummary:
    """What one region has asked for and been told.

    Attributes:
        region: the ``X-Region`` value.
        requests: endpoint name -> number of requests.
        predictions: attribute -> predicted label -> count.
        decisions: attribute -> decision -> count (every decision listed for an attribute seen).
    """

    region: str
    requests: dict[str, int] = field(default_factory=dict)
    predictions: dict[str, dict[str, int]] = field(default_factory=dict)
    decisions: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


class RegionStats:
    """Counts per region, in Redis when it answers, in memory otherwise.

    Args:
        guard: the shared Redis circuit breaker.
        prefix: the deployment's Redis key prefix.
        max_regions: distinct regions one process tracks; later ones are counted as ``other``
            (region names come from clients, so their number must be bounded).
    """

    def __init__(self, guard: RedisGuard, prefix: str, max_regions: int = 1000) -> None:
        self.guard = guard
        self.prefix = f"{prefix}:stats"
        self.drift_key = drift_status_key(prefix)
        self.max_regions = max_regions
        self._seen: set[str] = set()
        self._pending: Counter[Delta] = Counter()
        self._pending_id = uuid.uuid4().hex  # the id ``_pending`` will be sent under
        self._batch: tuple[str, Counter[Delta]] | None = None  # sent, not yet confirmed
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()

    def _admit(self, region: str) -> str:
        if region not in self._seen:
            if len(self._seen) >= self.max_regions:
                return OVERFLOW_REGION
            self._seen.add(region)
        return region

    def _key(self, region: str, kind: str) -> str:
        return f"{self.prefix}:region:{region}:{kind}"

    def record(self, region: str, endpoint: str, predictions: Iterable[Prediction] = ()) -> None:
        """Counts one request to ``endpoint``, the labels it predicted and their decisions (in
        memory; no I/O)."""
        region = self._admit(region)
        pending = self._pending
        pending[(region, "requests", endpoint)] += 1
        for prediction in predictions:
            for attribute, result in prediction.items():
                pending[(region, "predictions", f"{attribute}:{result['label']}")] += 1
                pending[(region, "decisions", f"{attribute}:{result['decision']}")] += 1
        self._wake.set()

    async def keep_flushing(self, retry_seconds: float) -> None:
        """Sends counts as they arrive, many requests' in one round trip; runs until cancelled.

        After a failed send (Redis away) it waits ``retry_seconds`` and tries again, so counts
        made during an outage reach Redis with no further request.
        """
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(retry_seconds)
                self._wake.set()

    @property
    def unsent(self) -> bool:
        """Whether counts are waiting in memory for Redis."""
        return bool(self._pending) or self._batch is not None

    async def flush(self, force: bool = False) -> bool:
        """Sends the counts held in memory to Redis; True when none are left.

        A caller never waits for another caller's flush: that one sends what is pending.
        ``force`` asks Redis even while the breaker is open (the last flush on shutdown).
        """
        if self._flushing.locked():
            return False
        async with self._flushing:
            try:
                while self.unsent:
                    if self._batch is None:
                        self._batch = (self._pending_id, self._pending)
                        self._pending, self._pending_id = Counter(), uuid.uuid4().hex
                    await self.guard.run(self._send, force=force)
                    self._batch = None
            except RedisUnavailable:
                return False  # the batch keeps its id: a retry cannot count it twice
        return True

    async def _send(self, redis: Redis) -> None:
        assert self._batch is not None
        batch_id, counts = self._batch
        args = [str(BATCH_ID_TTL_SECONDS)]
        for (region, kind, name), count in counts.items():
            args += [region, self._key(region, kind), name, str(count)]
        await redis.eval(APPLY_ONCE, 2, self._mark(batch_id), f"{self.prefix}:regions", *args)

    def _mark(self, batch_id: str) -> str:
        """The key the apply script sets with a batch's counts (and a read checks)."""
        return f"{self.prefix}:batch:{batch_id}"

    async def all(self) -> tuple[list[RegionSummary], str]:
        """Every region's summary and where the numbers come from (``redis`` or ``memory``)."""
        # Names in memory first: a batch applied during the read below is then in its answer.
        in_memory = {region for region, _, _ in self._unsent()}
        try:
            regions = await self.guard.run(lambda redis: redis.smembers(f"{self.prefix}:regions"))
        except RedisUnavailable:
            names = {region for region, _, _ in self._unsent()}
            return [self._from_pending(name) for name in sorted(names)], "memory"
        names = {as_text(r) for r in regions} | in_memory
        summaries = [await self.one(name) for name in sorted(names)]
        return [s for s, _ in summaries if s is not None], "redis"

    async def one(self, region: str) -> tuple[RegionSummary | None, str]:
        """One region's summary (None when it has made no requests) and its source."""
        batches = self._in_memory()
        try:
            counts, applied = await self.guard.run(lambda redis: self._read(redis, region, list(batches)))
        except RedisUnavailable:
            summary = self._from_pending(region)
            return (summary if summary.requests else None), "memory"
        summary = RegionSummary(region)
        for kind, kind_counts in counts.items():
            _add(summary, kind, kind_counts)
        for batch_id, batch in batches.items():
            if batch_id not in applied:
                _add_pending(summary, batch)
        return (summary if summary.requests else None), "redis"

    async def drift(self) -> dict[str, dict]:
        """Region (``all`` for the whole traffic) -> latest drift status; empty without Redis."""
        try:
            statuses = await self.guard.run(lambda redis: redis.hgetall(self.drift_key))
        except RedisUnavailable:
            return {}
        return {as_text(region): json.loads(status) for region, status in statuses.items()}

    async def _read(self, redis: Redis, region: str, batch_ids: list[str]) -> tuple[dict[str, dict], set[str]]:
        """Kind (``requests`` and each of ``COUNTED``) -> the region's hash of that kind, and which
        of ``batch_ids`` Redis had applied, read in one transaction (no batch lands in between)."""
        kinds = ("requests", *COUNTED)
        async with redis.pipeline(transaction=True) as pipe:
            for kind in kinds:
                pipe.hgetall(self._key(region, kind))
            for batch_id in batch_ids:
                pipe.exists(self._mark(batch_id))
            answers = await pipe.execute()
        applied = {batch_id for batch_id, found in zip(batch_ids, answers[len(kinds) :], strict=True) if found}
        return dict(zip(kinds, answers[: len(kinds)], strict=True)), applied

    def _in_memory(self) -> dict[str, Counter[Delta]]:
        """Batch id -> counts held here: the batch in flight, and the pending counts under the id
        they will be sent with (copied: later requests add to the live counter, not to this)."""
        batches = {self._pending_id: Counter(self._pending)} if self._pending else {}
        if self._batch is not None:
            batches[self._batch[0]] = self._batch[1]
        return batches

    def _from_pending(self, region: str) -> RegionSummary:
        summary = RegionSummary(region)
        _add_pending(summary, self._unsent())
        return summary

    def _unsent(self) -> Counter[Delta]:
        """Counts not confirmed by Redis (an unconfirmed batch may already be applied there)."""
        return self._pending + (self._batch[1] if self._batch else Counter())


def _add(summary: RegionSummary, kind: str, counts: dict) -> None:
    for name, count in counts.items():
        _increment(summary, kind, as_text(name), int(count))


def _add_pending(summary: RegionSummary, pending: Counter[Delta]) -> None:
    for (region, kind, name), count in pending.items():
        if region == summary.region:
            _increment(summary, kind, name, count)


def _increment(summary: RegionSummary, kind: str, name: str, count: int) -> None:
    if kind == "requests":
        summary.requests[name] = summary.requests.get(name, 0) + count
        return
    attribute, _, value = name.partition(":")
    if kind == "decisions":
        by_decision = summary.decisions.setdefault(attribute, dict.fromkeys(DECISIONS, 0))
        by_decision[value] = by_decision.get(value, 0) + count
        return
    by_label = summary.predictions.setdefault(attribute, {})
    by_label[value] = by_label.get(value, 0) + count
