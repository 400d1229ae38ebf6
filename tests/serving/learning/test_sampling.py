"""Sampling for review after each answer: what is kept, why, within which caps, and that none is lost."""

from __future__ import annotations

import json

import pytest
from learning_helpers import FEEDBACK, drifted, label_store, png_body, queued
from litestar.testing import AsyncTestClient
from redis import Redis
from serving_helpers import CLASSIFY, metric, unique_png

from feedback.images import ImageStore
from vehicle_model.records import drift_status_key

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


async def test_kept_images_are_the_uploads_and_every_accepted_one_is_written_by_shutdown(learning_app):
    app, settings = learning_app(review_uniform_share=1.0)
    uploads = {}
    async with AsyncTestClient(app) as client:
        for seed in range(12):
            data = unique_png(100 + seed)
            answer = await client.post(CLASSIFY, **png_body(data, "eu"))
            uploads[answer.json()["request_id"]] = data
    # The app has stopped: what it accepted for review is in the store, nothing waits in memory.
    with label_store(settings) as store:
        items = {item_id: store.item(item_id) for item_id in uploads}
    images = ImageStore(settings.review_images_url)
    assert all(item is not None for item in items.values()), "every kept answer was written before the app stopped"
    for item_id, item in items.items():
        assert images.get(item.image_sha) == uploads[item_id]
        assert item.reasons == ("uniform",) and item.region == "eu" and item.client == "anonymous"
        assert item.version == "1" and set(item.predictions) == {"vehicle_type", "color"}


async def test_sampling_off_keeps_nothing_but_feedback_still_counts(learning_app, small_model):
    app, settings = learning_app(review_sampling=False)
    async with AsyncTestClient(app) as client:
        answer = (await client.post(CLASSIFY, **png_body(unique_png(200), "north"))).json()
        label = {"vehicle_type": answer["predictions"]["vehicle_type"]["label"]}
        feedback = await client.post(FEEDBACK, json={"request_id": answer["request_id"], "labels": label})
        stats = (await client.get("/api/stats/regions/north")).json()
    assert feedback.json()["kept_image"] is False and feedback.json()["trains"] is False
    assert stats["feedback"]["labelled"] == 1 and stats["feedback"]["accuracy"] == {"vehicle_type": 1.0}
    with label_store(settings) as store:
        assert store.kept_count() == 0 and store.label(answer["request_id"]).kept is False


async def test_the_hourly_cap_bounds_what_is_kept(learning_app):
    app, settings = learning_app(review_uniform_share=1.0, review_max_per_hour=2)
    async with AsyncTestClient(app) as client:
        for seed in range(5):
            await client.post(CLASSIFY, **png_body(unique_png(300 + seed)))
        capped = metric((await client.get("/metrics")).text, "vehicle_review_dropped_total", reason="hourly_cap")
    with label_store(settings) as store:
        assert store.kept_count() == 2
    assert capped == 3


async def test_a_full_writer_queue_drops_and_the_receipt_says_so(learning_app):
    app, settings = learning_app(review_uniform_share=1.0, review_queue_max_mb=1e-5)  # ~10 bytes: no image fits
    async with AsyncTestClient(app) as client:
        request_id = (await client.post(CLASSIFY, **png_body(unique_png(400)))).json()["request_id"]
        feedback = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {"color": "red"}})
        dropped = metric((await client.get("/metrics")).text, "vehicle_review_dropped_total", reason="queue_full")
    assert dropped == 1
    assert feedback.status_code == 200 and feedback.json()["kept_image"] is False
    with label_store(settings) as store:
        assert store.kept_count() == 0


async def test_drifted_regions_are_read_in_the_background_and_sampled(learning_app, redis_url, redis_prefix):
    status = {"drift": True, "drifted": ["tone"], "records": 500, "version": "1", "checked_at": "2026-12-06T10:00:00"}
    redis = Redis.from_url(redis_url)
    redis.hset(
        drift_status_key(redis_prefix),
        mapping={"night": json.dumps(status), "day": json.dumps({**status, "drift": False})},
    )
    redis.close()
    app, settings = learning_app(review_uniform_share=0.0, review_drifted_share=1.0, review_refresh_seconds=0.2)
    async with AsyncTestClient(app) as client:
        await drifted(client, ["night"])
        answers = {}
        for seed, region in enumerate(["day", "night", "day", "night"]):
            response = await client.post(CLASSIFY, **png_body(unique_png(500 + seed), region))
            answers[response.json()["request_id"]] = region
        queue = await queued(client, 2)
    night = [i for i, region in answers.items() if region == "night"]
    assert queue["drifted_regions"] == ["night"]
    assert sorted(item["item_id"] for item in queue["items"]) == sorted(night)
    assert all(item["reasons"] == ["drifted"] and item["drifted"] for item in queue["items"])
