"""Redis failing under real concurrent HTTP load: killed and restarted, or hung (paused)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from serving_helpers import CLASSIFY, REPORT, ThrowawayRedis, assert_error, free_port, running_server, unique_png

from serving.app import create_app
from serving.model.service import ModelService

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

CLIENTS, ROUNDS = 8, 6
CLIENT_TIMEOUT = 30.0  # a request that hangs on Redis would hit this and fail the test


async def _wait_for(client: httpx.AsyncClient, state: str) -> None:
    deadline = time.monotonic() + 60
    while (await client.get("/ready")).json()["redis"] != state:
        assert time.monotonic() < deadline, f"redis never became {state!r}"
        await asyncio.sleep(0.1)


async def _load(client: httpx.AsyncClient, worker: int, rounds: int, region: str) -> list[int]:
    statuses = []
    for i in range(rounds):
        seed = 10_000 + worker * 100 + i
        statuses.append(
            (
                await client.post(
                    CLASSIFY, files={"file": ("c.png", unique_png(seed), "image/png")}, headers={"X-Region": region}
                )
            ).status_code
        )
        vehicle_id = f"fault-{worker}-{i}-{seed}"
        statuses.append(
            (
                await client.post(
                    REPORT,
                    files={"file": ("c.png", unique_png(seed + 50), "image/png")},
                    data={"vehicle_id": vehicle_id},
                )
            ).status_code
        )
        statuses.append((await client.get(f"{REPORT}/{vehicle_id}")).status_code)
    return statuses


async def test_redis_killed_mid_load_loses_no_request_and_counts_stats_once(make_settings, small_model, tmp_path):
    throwaway_redis = ThrowawayRedis(free_port(), data_dir=tmp_path)  # keeps what it applied across the restart
    throwaway_redis.start()
    settings = make_settings(redis_url=throwaway_redis.url, redis_retry_after_seconds=0.3)
    app = create_app(settings, model_service=ModelService(None, small_model, inference_threads=2))
    with running_server(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
            first = asyncio.gather(*(_load(client, w, ROUNDS, "eu") for w in range(CLIENTS)))
            await asyncio.sleep(0.5)
            throwaway_redis.stop()
            await _wait_for(client, "degraded")
            throwaway_redis.start()
            statuses = [s for batch in await first for s in batch]
            await _wait_for(client, "ok")
            redis = throwaway_redis.client()
            key = f"{settings.redis_key_prefix}:stats:region:eu:requests"
            deadline = time.monotonic() + 60
            while redis.hget(key, "classify") != str(CLIENTS * ROUNDS).encode() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)  # the background flusher sends what the outage kept
            counted = int(redis.hget(key, "classify") or 0)
    throwaway_redis.stop()
    classify, create, read = statuses[0::3], statuses[1::3], statuses[2::3]
    assert classify == [200] * CLIENTS * ROUNDS and create == [201] * CLIENTS * ROUNDS
    # A report stored in Redis just before it died is out of reach until it returns: 503, never a
    # 404 claiming it does not exist. Each client has at most one report across the moment Redis dies.
    assert set(read) <= {200, 503} and read.count(200) >= len(read) - CLIENTS
    assert counted == CLIENTS * ROUNDS, "every classify counted in Redis, none twice"


async def test_hung_redis_costs_a_timeout_not_a_request(make_settings, throwaway_redis, small_model):
    throwaway_redis.start()
    settings = make_settings(redis_url=throwaway_redis.url, redis_timeout_seconds=1.0, redis_retry_after_seconds=1.0)
    app = create_app(settings, model_service=ModelService(None, small_model, inference_threads=2))
    with running_server(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
            before = await _load(client, 0, 1, "eu")
            throwaway_redis.pause()
            try:
                during = [
                    s
                    for batch in await asyncio.gather(*(_load(client, w, 2, "eu") for w in range(1, 5)))
                    for s in batch
                ]
                ready = (await client.get("/ready")).json()
            finally:
                throwaway_redis.resume()
            await _wait_for(client, "ok")
            after = await _load(client, 9, 1, "eu")
    assert before == after == [200, 201, 200]
    assert during == [200, 201, 200] * 8
    assert ready["redis"] == "degraded"


async def test_report_read_never_says_not_found_when_redis_could_not_be_asked(
    make_settings, throwaway_redis, small_model
):
    throwaway_redis.start()
    # A long breaker window: after one failure every other caller skips Redis for a minute.
    settings = make_settings(redis_url=throwaway_redis.url, redis_timeout_seconds=1.0, redis_retry_after_seconds=60.0)
    app = create_app(settings, model_service=ModelService(None, small_model, inference_threads=2))
    with running_server(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
            created = await client.post(
                REPORT, files={"file": ("c.png", unique_png(777), "image/png")}, data={"vehicle_id": "in-redis"}
            )
            assert created.status_code == 201, created.text
            throwaway_redis.pause()
            try:
                hung = await client.get(f"{REPORT}/in-redis")
                hung_again = await client.get(f"{REPORT}/in-redis")  # breaker open: Redis asked anyway
                ready = (await client.get("/ready")).json()
            finally:
                throwaway_redis.resume()
            # Redis answers again but the breaker is still open for everyone else.
            back = await client.get(f"{REPORT}/in-redis")
            absent = await client.get(f"{REPORT}/never-created")
    for response in (hung, hung_again):
        error = assert_error(response, 503, "store_unavailable")
        assert "in-redis" in error["message"]
        assert int(response.headers["retry-after"]) == 60
    assert ready["redis"] == "degraded"
    assert back.status_code == 200 and back.json()["vehicle_id"] == "in-redis"
    assert_error(absent, 404, "report_not_found")
