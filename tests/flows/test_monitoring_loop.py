"""The monitoring loop end to end: the serving app on the trained v1 (a copy of the
``trained_v1`` registry) logs real traffic to a real Redis stream; the drift flow on the
Prefect harness reads it and flags only the region whose camera went dark; the stats endpoint
then shows each region's drift status."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from flow_support import events
from litestar.testing import AsyncTestClient
from PIL import Image, ImageEnhance
from redis import Redis

from flows.monitoring import monitor_drift
from serving.app import create_app
from serving.settings import ServingSettings
from tasks.data.synthetic import generate_dataset
from vehicle_model.records import log_key

pytestmark = [pytest.mark.flows, pytest.mark.asyncio(loop_scope="session")]

BATCH = "/api/vehicle/classify-batch"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images v1 never saw, from the generator that made its training set."""
    root = tmp_path_factory.mktemp("loop-traffic")
    generate_dataset(root, n=150, seed=12)
    return root


@pytest.fixture
def prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    prefix = f"test-loop-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    yield prefix
    redis = Redis.from_url(redis_url)
    keys = list(redis.scan_iter(f"{prefix}:*"))
    if keys:
        redis.delete(*keys)
    redis.close()


def _images(root: Path, rows: slice, dark: bool = False) -> list[bytes]:
    frame = pd.read_csv(root / "labels.csv").iloc[rows]
    blobs = []
    for name in frame["image"]:
        image = Image.open(root / name).convert("RGB")
        if dark:
            image = ImageEnhance.Brightness(image).enhance(0.3)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
    return blobs


async def _send(client: AsyncTestClient, blobs: list[bytes], region: str) -> None:
    for start in range(0, len(blobs), 25):
        files = [("files", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs[start : start + 25])]
        response = await client.post(BATCH, files=files, headers={"X-Region": region})
        assert response.status_code == 200, response.text


async def _logged(redis_url: str, prefix: str, count: int, timeout: float = 30.0) -> None:
    """Waits (bounded) until the app's background writer has appended ``count`` records."""
    redis = Redis.from_url(redis_url)
    try:
        for _ in range(int(timeout / 0.1)):
            if redis.xlen(log_key(prefix)) >= count:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"only {redis.xlen(log_key(prefix))} of {count} records reached the log")
    finally:
        redis.close()


async def test_dark_region_is_flagged_others_are_not(trained_v1_copy, redis_url, prefix, traffic, tmp_path):
    settings = ServingSettings(
        mlflow_tracking_uri=trained_v1_copy.tracking_uri,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        log_dir=tmp_path / "logs",
        rate_limit_per_minute=0,
        inference_threads=2,
        api_key=None,
        cors_origins=[],
        prediction_log_flush_seconds=0.1,
        prediction_log_max_per_second=0,
        redis_timeout_seconds=2,
    )
    async with AsyncTestClient(create_app(settings)) as client:
        await _send(client, _images(traffic, slice(0, 50)), "north")
        await _send(client, _images(traffic, slice(50, 100)), "south")
        await _logged(redis_url, prefix, 100)

        calm = await asyncio.to_thread(monitor_drift)
        assert calm.version == "1" and calm.compared == 100
        assert {r: v["drift"] for r, v in calm.regions.items()} == {"all": False, "north": False, "south": False}

        started = datetime.now(UTC)
        await _send(client, _images(traffic, slice(100, 150), dark=True), "night")
        await _logged(redis_url, prefix, 150)
        shifted = await asyncio.to_thread(monitor_drift, window_minutes=30)

        assert shifted.compared == 150
        assert shifted.regions["night"]["drift"] is True
        assert shifted.regions["north"]["drift"] is False and shifted.regions["south"]["drift"] is False
        assert shifted.drifted_regions == ["night"]
        # In a thread: inside a running loop EventsWorker.drain_all returns a coroutine, draining nothing.
        [event] = await asyncio.to_thread(events, "vehicle.drift.detected", started)
        assert event.payload["regions"] == ["night"]

        stats = (await client.get("/api/stats/regions")).json()
        status = {region["region"]: region["drift"] for region in stats["regions"]}
        assert status["night"]["drift"] is True and status["night"]["version"] == "1"
        assert status["north"]["drift"] is False and status["south"]["drift"] is False
