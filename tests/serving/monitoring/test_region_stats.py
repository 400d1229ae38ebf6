"""Per-region stats on their own (memory mode)."""

from __future__ import annotations

import pytest

from serving.monitoring.region_stats import OVERFLOW_REGION, RegionStats
from serving.storage.stores import RedisGuard

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


async def test_region_names_beyond_the_bound_are_counted_as_other():
    stats = RegionStats(RedisGuard(None), "p", max_regions=2)
    for region in ("a", "b", "c", "d"):
        stats.record(region, "classify")
    summaries, storage = await stats.all()
    assert storage == "memory"
    assert {s.region: s.requests["classify"] for s in summaries} == {"a": 1, "b": 1, OVERFLOW_REGION: 2}
