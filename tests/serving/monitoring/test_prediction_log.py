"""The prediction log in a real Redis stream: what is written, the cap, Redis going away, and
the drift status next to the region counts."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry, Counter
from redis import Redis
from serving_helpers import BATCH, CLASSIFY, metric, unique_png

from serving.app import create_app
from serving.monitoring.prediction_log import PredictionLog
from serving.storage.stores import RedisGuard, redis_client
from vehicle_model.records import PROJECTION_DIM, SUMMARY_DIM, TONE_DIM, decode, drift_status_key, log_key

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


def upload(data: bytes) -> dict:
    return {"file": ("car.png", data, "image/png")}


async def _metric_reaches(client: AsyncTestClient, name: str, value: float, **labels: str) -> float:
    """The metric once it reaches ``value`` (the writer runs in the background), or its last value."""
    for _ in range(100):
        current = metric((await client.get("/metrics")).text, name, **labels)
        if current >= value:
            return current
        await asyncio.sleep(0.05)
    return current


async def test_inferred_images_are_logged_with_region_labels_decisions_and_summary(
    make_settings, redis_url, redis_prefix
):
    settings = make_settings(prediction_log_flush_seconds=0.05)
    async with AsyncTestClient(create_app(settings)) as client:
        single = await client.post(CLASSIFY, files=upload(unique_png(1)), headers={"X-Region": "north"})
        batch = await client.post(
            BATCH,
            files=[("files", ("a.png", unique_png(2), "x")), ("files", ("b", b"not an image", "x"))],
            headers={"X-Region": "south"},
        )
        again = await client.post(CLASSIFY, files=upload(unique_png(1)), headers={"X-Region": "north"})
        written = await _metric_reaches(client, "vehicle_prediction_log_records_total", 2)

    assert single.status_code == batch.status_code == again.status_code == 200 and again.json()["cached"]
    assert written == 2, "two images went through the model; the bad file and the cache hit did not"
    redis = Redis.from_url(redis_url)
    records = [decode(fields[b"record"]) for _, fields in redis.xrange(log_key(redis_prefix))]
    redis.close()
    assert [r["region"] for r in records] == ["north", "south"]
    first = records[0]
    assert (first["model"], first["version"]) == ("vehicle-classifier", "1")
    for attribute, result in single.json()["predictions"].items():
        assert first["predictions"][attribute]["label"] == result["label"]
        assert first["predictions"][attribute]["probability"] == pytest.approx(
            result["top_k"][0]["probability"], abs=1e-4
        )
        assert first["predictions"][attribute]["decision"] == result["decision"]
    assert len(first["features"]) == PROJECTION_DIM and len(first["tone"]) == TONE_DIM
    assert sum(first["tone"][:3]) == pytest.approx(1.0, abs=1e-3), "saturation bins of a histogram sum to 1"


async def test_requests_succeed_and_records_are_counted_as_dropped_while_redis_is_away(make_settings, throwaway_redis):
    settings = make_settings(redis_url=throwaway_redis.url, prediction_log_flush_seconds=0.05)  # never started
    async with AsyncTestClient(create_app(settings)) as client:
        responses = [await client.post(CLASSIFY, files=upload(unique_png(10 + i))) for i in range(3)]
        dropped = await _metric_reaches(client, "vehicle_prediction_log_dropped_total", 3, reason="redis_unavailable")
        text = (await client.get("/metrics")).text
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert dropped == 3 and metric(text, "vehicle_prediction_log_records_total") == 0


async def test_stream_is_capped_and_a_full_queue_drops(redis_url, redis_prefix):
    registry = CollectorRegistry()
    written = Counter("written", "w", registry=registry)
    dropped = Counter("dropped", "d", ["reason"], registry=registry)
    guard = RedisGuard(redis_client(redis_url, 1.0))
    log = PredictionLog(guard, redis_prefix, written, dropped, maxlen=50, queue_size=400)
    prediction = {"vehicle_type": {"label": "bus", "probabilities": {"bus": 0.8, "van": 0.2}}}
    summaries = np.zeros((500, SUMMARY_DIM), dtype=np.float32)
    log.submit("m", "1", "north", [prediction] * 500, summaries)
    assert await log.flush() == 400
    await guard.close()
    assert dropped.labels("queue_full")._value.get() == 100
    redis = Redis.from_url(redis_url)
    length = redis.xlen(log_key(redis_prefix))
    redis.close()
    # MAXLEN ~ trims whole stream nodes (100 entries by default), so the length lands near the cap.
    assert 50 <= length < 400


async def test_stats_show_each_regions_latest_drift_status(make_settings, redis_url, redis_prefix):
    status = {
        "drift": True,
        "drifted": ["tone"],
        "records": 60,
        "version": "1",
        "checked_at": "2026-11-28T09:00:00+00:00",
    }
    redis = Redis.from_url(redis_url)
    redis.hset(
        drift_status_key(redis_prefix),
        mapping={"night": json.dumps(status), "all": json.dumps({**status, "drift": False})},
    )
    redis.close()
    async with AsyncTestClient(create_app(make_settings())) as client:
        for region in ("night", "day"):
            await client.post(CLASSIFY, files=upload(unique_png(20)), headers={"X-Region": region})
        everything = (await client.get("/api/stats/regions")).json()
        night = (await client.get("/api/stats/regions/night")).json()
    regions = {r["region"]: r for r in everything["regions"]}
    assert regions["night"]["drift"] == status and night["drift"] == status
    assert regions["day"]["drift"] is None, "a region never checked has no status"
    assert everything["drift"]["drift"] is False


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "no-redis"])
async def test_stop_ends_the_writer_even_right_after_a_burst_woke_it(redis_url, redis_prefix, with_redis):
    """A shutdown in the same few event-loop turns as a burst of records (which wakes the
    writer) stops the writer promptly and accounts for the whole burst: written, or counted as
    dropped when there is no Redis. When ``stop`` cancelled the writer, a cancel landing as the
    burst woke it was swallowed by ``wait_for`` on Python 3.11 (``stop`` never returned), and
    one landing mid-flush lost the records that flush had taken."""
    prediction = {"vehicle_type": {"label": "bus", "probabilities": {"bus": 0.8, "van": 0.2}}}
    burst = 256  # the queue length that wakes the writer before its flush interval
    for turns in range(4):
        registry = CollectorRegistry()
        written = Counter("written", "w", registry=registry)
        dropped = Counter("dropped", "d", ["reason"], registry=registry)
        guard = RedisGuard(redis_client(redis_url, 1.0) if with_redis else None)
        log = PredictionLog(guard, redis_prefix, written, dropped, flush_seconds=60)
        await log.start()
        await asyncio.sleep(0.01)  # the writer is waiting for its interval or a wake-up
        log.submit("m", "1", "north", [prediction] * burst, np.zeros((burst, SUMMARY_DIM), dtype=np.float32))
        for _ in range(turns):
            await asyncio.sleep(0)
        deadline = asyncio.timeout(10)
        try:
            async with deadline:
                await log.stop()
        except TimeoutError:
            pass
        finally:
            await guard.close()
        assert not deadline.expired(), f"stop() had not returned 10 s after it came {turns} loop turns after the burst"
        accounted = written._value.get() + dropped.labels("redis_unavailable")._value.get()
        assert accounted == burst, f"{turns} turns: every record of the burst is written or counted as dropped"
