"""Reports, stats, cache and rate limits in a real Redis, and what happens when it goes away."""

from __future__ import annotations

import asyncio
import json

import pytest
from litestar.testing import AsyncTestClient
from redis import Redis
from serving_helpers import BATCH, CLASSIFY, REPORT, metric, unique_png

from serving.app import create_app

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


def files(data: bytes, name: str = "car.png") -> dict:
    return {"file": (name, data, "image/png")}


async def redis_state(client: AsyncTestClient) -> str:
    return (await client.get("/ready")).json()["redis"]


async def wait_for_redis(client: AsyncTestClient, state: str, attempts: int = 200) -> None:
    for _ in range(attempts):
        if await redis_state(client) == state:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"redis never became {state!r}")


async def test_reports_stats_cache_and_rate_limits_are_redis_keys(
    make_settings, redis_url, redis_prefix, sample_images
):
    settings = make_settings(rate_limit_per_minute=100)
    async with AsyncTestClient(create_app(settings)) as client:
        await client.post(
            REPORT,
            files=files(sample_images["jpeg"], "../../../tmp/x.jpg"),
            data={"vehicle_id": "in-redis-1"},
            headers={"X-Region": "eu"},
        )
        classified = await client.post(CLASSIFY, files=files(sample_images["png"]), headers={"X-Region": "eu"})
        await client.post(
            BATCH, files=[("files", ("a.png", sample_images["jpeg4"], "image/png"))], headers={"X-Region": "apac"}
        )
    redis = Redis.from_url(redis_url)
    report_key = f"{redis_prefix}:reports:in-redis-1"
    assert 0 < redis.ttl(report_key) <= 3600
    assert json.loads(redis.get(report_key))["vehicle_id"] == "in-redis-1"

    assert redis.smembers(f"{redis_prefix}:stats:regions") == {b"eu", b"apac"}
    requests_key = f"{redis_prefix}:stats:region:eu:requests"
    assert redis.type(requests_key) == b"hash"
    assert redis.hgetall(requests_key) == {b"report": b"1", b"classify": b"1"}
    predictions = redis.hgetall(f"{redis_prefix}:stats:region:eu:predictions")
    assert sum(int(v) for k, v in predictions.items() if k.startswith(b"vehicle_type:")) == 2
    png_label = classified.json()["predictions"]["vehicle_type"]["label"]
    assert int(predictions[f"vehicle_type:{png_label}".encode()]) >= 1
    decisions = redis.hgetall(f"{redis_prefix}:stats:region:eu:decisions")
    png_decision = classified.json()["predictions"]["vehicle_type"]["decision"]
    assert sum(int(v) for k, v in decisions.items() if k.startswith(b"vehicle_type:")) == 2
    assert int(decisions[f"vehicle_type:{png_decision}".encode()]) >= 1

    cache_keys = sorted(redis.scan_iter(match=f"{redis_prefix}:classify:*"))
    # <prefix>:classify:<model name>:<version>:<result format>:<sha256>
    assert len(cache_keys) == 3 and all(key.split(b":")[2:4] == [b"vehicle-classifier", b"1"] for key in cache_keys)
    assert all(0 < redis.ttl(key) <= settings.classify_cache_ttl_seconds for key in cache_keys)
    assert list(redis.scan_iter(match=f"{redis_prefix}:rate_limit:*"))
    all_keys = b" ".join(redis.scan_iter(match=f"{redis_prefix}*"))
    assert b"tmp" not in all_keys and b".." not in all_keys and b"car.png" not in all_keys
    redis.close()


async def test_redis_down_at_start_degrades_then_recovers_by_itself(make_settings, throwaway_redis, sample_images):
    settings = make_settings(redis_url=throwaway_redis.url, redis_retry_after_seconds=0.3, rate_limit_per_minute=100)
    async with AsyncTestClient(create_app(settings)) as client:
        ready = await client.get("/ready")
        during = [
            await client.post(CLASSIFY, files=files(sample_images["jpeg"]), headers={"X-Region": "eu"}),
            await client.post(CLASSIFY, files=files(sample_images["jpeg"]), headers={"X-Region": "eu"}),
            await client.post(REPORT, files=files(sample_images["png"]), data={"vehicle_id": "made-offline"}),
            await client.get(f"{REPORT}/made-offline"),
            await client.get("/api/stats/regions"),
        ]
        metrics_down = (await client.get("/metrics")).text

        throwaway_redis.start()
        await wait_for_redis(client, "ok")
        after = await client.post(REPORT, files=files(sample_images["png"]), data={"vehicle_id": "made-online"})
        await client.post(CLASSIFY, files=files(sample_images["jpeg1"]), headers={"X-Region": "eu"})
        offline_report = await client.get(f"{REPORT}/made-offline")
        stats = (await client.get("/api/stats/regions/eu")).json()
        metrics_up = (await client.get("/metrics")).text

    assert ready.status_code == 200 and ready.json()["redis"] == "degraded"
    assert [r.status_code for r in during] == [200, 200, 201, 200, 200]
    assert during[1].json()["cached"] is True  # the in-memory cache stands in for Redis
    assert during[4].json()["storage"] == "memory"
    assert metric(metrics_down, "vehicle_redis_up") == 0 and metric(metrics_up, "vehicle_redis_up") == 1
    assert after.status_code == 201 and offline_report.status_code == 200
    redis = throwaway_redis.client()
    assert redis.exists(f"{settings.redis_key_prefix}:reports:made-online")
    # Counts made while Redis was away were flushed into it once it answered.
    assert redis.hget(f"{settings.redis_key_prefix}:stats:region:eu:requests", "classify") == b"3"
    assert stats["requests"]["classify"] == 3
    redis.close()


async def test_redis_dying_mid_run_loses_no_request_and_is_used_again_after_restart(
    make_settings, throwaway_redis, sample_images
):
    throwaway_redis.start()
    settings = make_settings(redis_url=throwaway_redis.url, redis_retry_after_seconds=0.3, rate_limit_per_minute=1000)
    prefix = settings.redis_key_prefix
    async with AsyncTestClient(create_app(settings)) as client:
        before = await client.post(REPORT, files=files(sample_images["jpeg"]), data={"vehicle_id": "before"})
        assert throwaway_redis.client().exists(f"{prefix}:reports:before")

        throwaway_redis.stop()
        outage = []
        for i in range(12):
            outage.append(await client.post(CLASSIFY, files=files(unique_png(i)), headers={"X-Region": "eu"}))
            report = files(unique_png(100 + i))
            outage.append(await client.post(REPORT, files=report, data={"vehicle_id": f"out-{i}"}))
            outage.append(await client.get(f"{REPORT}/out-{i}"))
            outage.append(await client.get("/api/stats/regions/eu"))
        degraded = await redis_state(client)
        metrics = (await client.get("/metrics")).text

        throwaway_redis.start()  # an empty Redis on the same port, as after a crash without persistence
        await wait_for_redis(client, "ok")
        back = await client.post(REPORT, files=files(sample_images["png"]), data={"vehicle_id": "after"})
        out_report = await client.get(f"{REPORT}/out-3")
        stats = (await client.get("/api/stats/regions/eu")).json()

    assert before.status_code == 201
    assert [r.status_code for r in outage] == [200, 201, 200, 200] * 12
    assert degraded == "degraded" and metric(metrics, "vehicle_redis_up") == 0
    assert back.status_code == 201 and out_report.status_code == 200
    redis = throwaway_redis.client()
    assert redis.exists(f"{prefix}:reports:after") and 0 < redis.ttl(f"{prefix}:reports:after") <= 3600
    assert redis.hget(f"{prefix}:stats:region:eu:requests", "classify") == b"12"
    assert stats["requests"]["classify"] == 12
    redis.close()


async def test_memory_mode_without_redis_url(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings(redis_url=None))) as client:
        ready = (await client.get("/ready")).json()
        await client.post(REPORT, files=files(sample_images["jpeg"]), data={"vehicle_id": "mem"})
        report = await client.get(f"{REPORT}/mem")
        stats = (await client.get("/api/stats/regions")).json()
    assert ready["redis"] == "memory"
    assert report.status_code == 200
    assert stats["storage"] == "memory" and stats["regions"][0]["requests"] == {"report": 1, "report-get": 1}


async def test_connections_to_redis_stay_bounded_under_any_concurrency(redis_url, redis_prefix):
    """Open sockets must not creep up with each new concurrency peak (the soak saw 28 -> 35)."""
    from serving.storage.stores import redis_client

    name = f"{redis_prefix}-pool"
    # A generous timeout: the test is about how many sockets open, and a loaded machine (the
    # whole suite on two cores) can take longer than a second to accept one.
    client = redis_client(f"{redis_url}?client_name={name}", 30.0, max_connections=4)
    observer = Redis.from_url(redis_url)
    key = f"{redis_prefix}:pool"
    try:
        results = await asyncio.gather(*(client.incr(key) for _ in range(300)))
        connections = sum(c["name"] == name for c in observer.client_list())
    finally:
        await client.aclose(close_connection_pool=True)
        observer.close()
    assert sorted(results) == list(range(1, 301)), "every caller got its answer, none dropped"
    assert 1 <= connections <= 4
