"""Per-region stats on their own: memory mode, and reads racing flushes on a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from serving.monitoring.region_stats import OVERFLOW_REGION, RegionStats
from serving.storage.stores import RedisGuard, redis_client

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


async def test_region_names_beyond_the_bound_are_counted_as_other():
    stats = RegionStats(RedisGuard(None), "p", max_regions=2)
    for region in ("a", "b", "c", "d"):
        stats.record(region, "classify")
    summaries, storage = await stats.all()
    assert storage == "memory"
    assert {s.region: s.requests["classify"] for s in summaries} == {"a": 1, "b": 1, OVERFLOW_REGION: 2}


async def test_a_read_racing_a_flush_counts_every_request_exactly_once(redis_url, redis_prefix):
    """Each round records one request, then reads while a flush applies the counts to Redis: the
    read sees them either in Redis or in memory, never in both and never in neither."""
    guard = RedisGuard(redis_client(redis_url, 2.0))
    stats = RegionStats(guard, redis_prefix)
    seen = []
    try:
        for recorded in range(1, 201):
            stats.record("race", "classify")
            _, (summary, storage), (summaries, _) = await asyncio.gather(stats.flush(), stats.one("race"), stats.all())
            assert storage == "redis"
            seen.append((summary.requests["classify"], {s.region: s.total_requests for s in summaries}.get("race")))
            assert seen[-1] == (recorded, recorded), seen[-5:]
    finally:
        await guard.close()  # the prefix's keys are deleted by its fixture
