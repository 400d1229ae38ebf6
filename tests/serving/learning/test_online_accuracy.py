"""Online accuracy in /api/stats/regions and Prometheus, from unbiased labels only."""

from __future__ import annotations

import json

import pytest
from learning_helpers import FEEDBACK, drifted, png_body, queued
from litestar.testing import AsyncTestClient
from redis import Redis
from serving_helpers import CLASSIFY, metric, unique_png

from vehicle_model.records import drift_status_key

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


async def test_feedback_scores_the_version_and_targeted_reviews_do_not(learning_app, redis_url, redis_prefix):
    status = {"drift": True, "drifted": ["tone"], "records": 300, "version": "1", "checked_at": "2026-12-06T09:00:00"}
    redis = Redis.from_url(redis_url)
    redis.hset(drift_status_key(redis_prefix), "night", json.dumps(status))
    redis.close()
    # Nothing in the uniform sample; every answer from the drifted region kept (a targeted sample).
    app, _ = learning_app(review_uniform_share=0.0, review_drifted_share=1.0, review_refresh_seconds=0.2)
    async with AsyncTestClient(app) as client:
        await drifted(client, ["night"])
        north = [(await client.post(CLASSIFY, **png_body(unique_png(900 + i), "north"))).json() for i in range(3)]
        for i in range(2):
            await client.post(CLASSIFY, **png_body(unique_png(910 + i), "night"))
        # Two of the three north answers were right, by the clients' word.
        for answer, right in zip(north, (True, True, False), strict=True):
            guess = answer["predictions"]["vehicle_type"]["label"]
            truth = guess if right else next(c["label"] for c in answer["predictions"]["vehicle_type"]["top_k"][1:])
            label = {"request_id": answer["request_id"], "labels": {"vehicle_type": truth}}
            assert (await client.post(FEEDBACK, json=label)).status_code == 200
        for item in (await queued(client, 2, region="night"))["items"]:
            await client.post(f"/api/labels/{item['item_id']}", json={"action": "confirm"})
        regions = {r["region"]: r for r in (await client.get("/api/stats/regions")).json()["regions"]}
        one = (await client.get("/api/stats/regions/north")).json()
        exposition = (await client.get("/metrics")).text

    block = regions["north"]["feedback"]
    assert block["labelled"] == 3 and block["accuracy"] == {"vehicle_type": pytest.approx(2 / 3)}
    assert block["low"]["vehicle_type"] < 2 / 3 < block["high"]["vehicle_type"]
    assert "uniform" in block["basis"] and one["feedback"] == block
    assert regions["night"]["feedback"] is None  # its two labels are reviews of a targeted sample
    assert metric(exposition, "vehicle_online_accuracy", region="north", attribute="vehicle_type") == pytest.approx(
        2 / 3
    )
    assert metric(exposition, "vehicle_online_labelled", region="north", attribute="vehicle_type") == 3
    assert metric(exposition, "vehicle_labels_total", source="feedback", outcome="created") == 3
    assert metric(exposition, "vehicle_labels_total", source="review", outcome="created") == 2
    assert metric(exposition, "vehicle_review_kept_total", reason="drifted") == 2
