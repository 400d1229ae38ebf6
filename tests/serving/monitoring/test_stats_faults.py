"""Region stats under Redis faults: a reply lost after Redis applied it, an outage that ends
while no request arrives."""

from __future__ import annotations

import asyncio
import time

import pytest
from litestar.testing import AsyncTestClient
from serving_helpers import CLASSIFY, LossyProxy, unique_png

from serving.app import create_app
from serving.model.service import ModelService
from serving.monitoring.region_stats import RegionStats
from serving.storage.stores import RedisGuard, redis_client

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def lossy_redis(throwaway_redis):
    throwaway_redis.start()
    proxy = LossyProxy(throwaway_redis.port)
    proxy.start()
    yield proxy
    proxy.stop()


async def test_a_reply_lost_after_redis_applied_the_counts_is_not_counted_twice(lossy_redis, throwaway_redis):
    # The timeout is what turns a dropped reply into a failure; a healthy reply must always beat
    # it, also on a loaded machine, so it is seconds, not a fraction of one.
    guard = RedisGuard(redis_client(lossy_redis.url, 2.0), retry_after=0.05)
    stats = RegionStats(guard, "faults")
    key = "faults:stats:region:eu:requests"
    try:
        stats.record("eu", "classify")
        assert await stats.flush()
        assert throwaway_redis.client().hget(key, "classify") == b"1"

        lossy_redis.drop_replies = True
        stats.record("eu", "classify")
        assert not await stats.flush()  # Redis applies it; the client times out
        assert throwaway_redis.client().hget(key, "classify") == b"2", "the increment did reach Redis"
        assert stats.unsent, "no confirmation: the batch is kept for a retry"

        lossy_redis.drop_replies = False
        await asyncio.sleep(0.1)  # the breaker lets Redis be tried again
        assert await stats.flush()
        stats.record("eu", "classify")
        assert await stats.flush()
    finally:
        await guard.close()

    assert throwaway_redis.client().hget(key, "classify") == b"3", "three requests, counted three times"


async def test_the_last_flush_is_tried_even_while_the_breaker_is_open(throwaway_redis):
    throwaway_redis.start()
    guard = RedisGuard(redis_client(throwaway_redis.url, 2.0), retry_after=60)
    stats = RegionStats(guard, "last-flush")
    key = "last-flush:stats:region:eu:requests"
    try:
        stats.record("eu", "classify")
        throwaway_redis.stop()
        assert not await stats.flush()  # the failure opens the breaker for a minute
        throwaway_redis.start()
        assert not await stats.flush(), "an ordinary flush waits for the breaker"
        assert await stats.flush(force=True)  # what shutdown does
    finally:
        await guard.close()
    assert throwaway_redis.client().hget(key, "classify") == b"1"


async def test_counts_made_during_an_outage_reach_redis_with_no_further_request(
    make_settings, throwaway_redis, small_model
):
    settings = make_settings(redis_url=throwaway_redis.url, redis_retry_after_seconds=0.3)
    key = f"{settings.redis_key_prefix}:stats:region:eu:requests"
    app = create_app(settings, model_service=ModelService(None, small_model))
    async with AsyncTestClient(app) as client:
        for i in range(3):
            response = await client.post(
                CLASSIFY, files={"file": ("car.png", unique_png(i), "image/png")}, headers={"X-Region": "eu"}
            )
            assert response.status_code == 200
        throwaway_redis.start()
        redis = throwaway_redis.client()
        deadline = time.monotonic() + 30
        while redis.hget(key, "classify") is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        counted = redis.hget(key, "classify")
    assert counted == b"3"
