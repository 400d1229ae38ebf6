"""Feedback while Redis is away: receipts fall back to memory, and an answer Redis holds is never a 404."""

from __future__ import annotations

import asyncio

import pytest
from learning_helpers import FEEDBACK, label_store, png_body
from litestar.testing import AsyncTestClient
from serving_helpers import CLASSIFY, assert_error, unique_png

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


async def test_answers_given_while_redis_is_away_take_feedback_from_memory(learning_app, throwaway_redis):
    throwaway_redis.start()
    app, settings = learning_app(redis_url=throwaway_redis.url, review_uniform_share=1.0, redis_timeout_seconds=1.0)
    async with AsyncTestClient(app) as client:
        throwaway_redis.stop()
        answer = await client.post(CLASSIFY, **png_body(unique_png(800)))
        ready = (await client.get("/ready")).json()
        request_id = answer.json()["request_id"]
        feedback = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {"color": "red"}})
        throwaway_redis.start()  # Redis back: the receipt written to memory meanwhile still answers
        again = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {"color": "red"}})
    assert answer.status_code == 200 and ready["redis"] == "degraded"
    assert feedback.status_code == 200 and feedback.json()["status"] == "created"
    assert feedback.json()["kept_image"] is True
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    with label_store(settings) as store:
        assert store.label(request_id).labels == {"color": "red"} and store.item(request_id) is not None


async def test_an_answer_whose_receipt_only_redis_holds_is_503_while_redis_is_away(learning_app, throwaway_redis):
    throwaway_redis.start()
    app, settings = learning_app(redis_url=throwaway_redis.url, redis_timeout_seconds=1.0)
    async with AsyncTestClient(app) as client:
        request_id = (await client.post(CLASSIFY, **png_body(unique_png(801)))).json()["request_id"]
        label = {"request_id": request_id, "labels": {"color": "red"}}
        redis = throwaway_redis.client()
        for _ in range(200):  # the receipt is written just after the answer
            if redis.exists(f"{settings.redis_key_prefix}:receipt:{request_id}"):
                break
            await asyncio.sleep(0.05)
        redis.close()
        throwaway_redis.stop()
        away = await client.post(FEEDBACK, json=label)
        throwaway_redis.start()  # a fresh, empty Redis: this time the answer truly is unknown
        unknown = await client.post(FEEDBACK, json=label)
    error = assert_error(away, 503, "store_unavailable")
    assert "Redis" in error["message"] and int(away.headers["retry-after"]) >= 1
    assert_error(unknown, 404, "prediction_not_found")
