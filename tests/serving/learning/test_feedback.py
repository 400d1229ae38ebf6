"""POST /api/vehicle/feedback: labels joined to the answer they correct, against real Redis and SQLite."""

from __future__ import annotations

import asyncio

import pytest
from learning_helpers import FEEDBACK, label_store, png_body
from litestar.testing import AsyncTestClient
from redis import Redis
from serving_helpers import BATCH, CLASSIFY, assert_error, unique_png

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


def other_label(classes: list[str], label: str) -> str:
    return next(c for c in classes if c != label)


async def test_feedback_is_created_then_idempotent_then_a_conflict_unless_replaced(learning_app, small_model):
    app, settings = learning_app(review_uniform_share=1.0)
    classes = small_model.classifier.classes()
    async with AsyncTestClient(app) as client:
        answer = (await client.post(CLASSIFY, **png_body(unique_png(1)))).json()
        request_id = answer["request_id"]
        guessed = answer["predictions"]["vehicle_type"]["label"]
        truth = {"vehicle_type": other_label(classes["vehicle_type"], guessed)}
        created = await client.post(FEEDBACK, json={"request_id": request_id, "labels": truth})
        again = await client.post(FEEDBACK, json={"request_id": request_id, "labels": truth})
        changed = {"vehicle_type": guessed}
        conflict = await client.post(FEEDBACK, json={"request_id": request_id, "labels": changed})
        replaced = await client.post(FEEDBACK, json={"request_id": request_id, "labels": changed, "replace": True})
        everything = {"vehicle_type": guessed, "color": classes["color"][0]}
        complete = await client.post(FEEDBACK, json={"request_id": request_id, "labels": everything, "replace": True})

    assert created.status_code == 200, created.text
    body = created.json()
    assert body["status"] == "created" and body["labels"] == truth and body["request_id"] == request_id
    assert body["kept_image"] is True and body["trains"] is False  # one attribute: not a training example
    assert body["model"] == {"name": "vehicle-classifier", "version": "1"}
    assert again.json()["status"] == "unchanged"
    assert "replace" in assert_error(conflict, 409, "label_conflict")["message"]
    assert replaced.json()["status"] == "replaced"
    assert complete.json()["status"] == "replaced" and complete.json()["trains"] is True
    with label_store(settings) as store:
        row = store.label(request_id)
        harvestable = [h.item_id for h in store.harvestable()]
    assert row.labels == everything and row.source == "feedback" and row.client == "anonymous"
    assert row.predicted["vehicle_type"] == guessed and row.version == "1" and row.kept is True
    assert harvestable == [request_id]


async def test_labels_outside_the_versions_classes_are_422_naming_the_allowed_ones(learning_app, small_model):
    app, _ = learning_app()
    classes = small_model.classifier.classes()
    async with AsyncTestClient(app) as client:
        request_id = (await client.post(CLASSIFY, **png_body(unique_png(2)))).json()["request_id"]
        bad_class = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {"vehicle_type": "zeppelin"}})
        bad_attribute = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {"wheels": "4"}})
        empty = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {}})
        not_json = await client.post(FEEDBACK, content=b"request_id=x", headers={"Content-Type": "text/plain"})

    error = assert_error(bad_class, 422, "invalid_label")
    assert error["accepted"] == classes["vehicle_type"] and error["attribute"] == "vehicle_type"
    assert all(label in error["message"] for label in classes["vehicle_type"])
    error = assert_error(bad_attribute, 422, "unknown_attribute")
    assert error["accepted"] == sorted(classes) and "vehicle_type" in error["message"]
    assert_error(empty, 400, "invalid_request")
    assert "JSON" in assert_error(not_json, 400, "bad_request")["message"]


async def test_unknown_and_expired_answers_are_404(learning_app):
    app, _ = learning_app(feedback_window_seconds=1)
    async with AsyncTestClient(app) as client:
        unknown = await client.post(FEEDBACK, json={"request_id": "never-answered", "labels": {"color": "red"}})
        request_id = (await client.post(CLASSIFY, **png_body(unique_png(3)))).json()["request_id"]
        await asyncio.sleep(2.5)  # past the one-second window: the receipt has expired in Redis
        expired = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {"color": "red"}})
    assert "never given to this client" in assert_error(unknown, 404, "prediction_not_found")["message"]
    assert "1 s" in assert_error(expired, 404, "prediction_not_found")["message"]


async def test_every_answer_leaves_a_receipt_in_redis_for_the_feedback_window(
    learning_app, redis_url, redis_prefix, sample_images
):
    app, settings = learning_app(review_sampling=False)
    files = [
        ("files", ("a.jpg", sample_images["jpeg0"], "image/jpeg")),
        ("files", ("notes.txt", b"not an image", "text/plain")),
        ("files", ("b.jpg", sample_images["jpeg1"], "image/jpeg")),
    ]
    async with AsyncTestClient(app) as client:
        single = (await client.post(CLASSIFY, **png_body(unique_png(4)))).json()["request_id"]
        batch = (await client.post(BATCH, files=files)).json()["request_id"]
        bad_file = await client.post(FEEDBACK, json={"request_id": f"{batch}:1", "labels": {"color": "red"}})
        second = await client.post(FEEDBACK, json={"request_id": f"{batch}:2", "labels": {"color": "red"}})
    redis = Redis.from_url(redis_url)
    try:
        receipts = {key.decode() for key in redis.scan_iter(match=f"{redis_prefix}:receipt:*")}
        ttl = redis.ttl(f"{redis_prefix}:receipt:{single}")
    finally:
        redis.close()
    assert receipts == {f"{redis_prefix}:receipt:{i}" for i in (single, f"{batch}:0", f"{batch}:2")}
    assert 0 < ttl <= settings.feedback_window_seconds
    assert_error(bad_file, 404, "prediction_not_found")  # a rejected file was never answered
    assert second.status_code == 200 and second.json()["kept_image"] is False and second.json()["trains"] is False


async def test_feedback_that_arrives_with_the_answer_finds_its_receipt(learning_app):
    app, _ = learning_app(review_uniform_share=1.0)
    async with AsyncTestClient(app) as client:
        request_ids = [f"burst-{i}" for i in range(6)]
        answers = await asyncio.gather(
            *(
                client.post(
                    CLASSIFY, content=unique_png(10 + i), headers={"Content-Type": "image/png", "X-Request-ID": r}
                )
                for i, r in enumerate(request_ids)
            )
        )
        # Sent as soon as each answer is read: the receipts are still being written after the answers.
        feedback = await asyncio.gather(
            *(client.post(FEEDBACK, json={"request_id": r, "labels": {"color": "red"}}) for r in request_ids)
        )
    assert [a.status_code for a in answers] == [200] * 6
    assert [(f.status_code, f.json()["kept_image"]) for f in feedback] == [(200, True)] * 6


async def test_feedback_off_keeps_no_receipts(learning_app, redis_url, redis_prefix):
    app, _ = learning_app(feedback_window_seconds=0, review_sampling=False)
    async with AsyncTestClient(app) as client:
        request_id = (await client.post(CLASSIFY, **png_body(unique_png(5)))).json()["request_id"]
        refused = await client.post(FEEDBACK, json={"request_id": request_id, "labels": {"color": "red"}})
    redis = Redis.from_url(redis_url)
    try:
        assert not list(redis.scan_iter(match=f"{redis_prefix}:receipt:*"))
    finally:
        redis.close()
    assert "FEEDBACK_WINDOW_SECONDS=0" in assert_error(refused, 404, "prediction_not_found")["message"]


async def test_without_a_label_store_answers_go_on_and_feedback_is_503(learning_app):
    app, _ = learning_app(labels_database_url="mysql://127.0.0.1:1/labels", review_uniform_share=1.0)
    async with AsyncTestClient(app) as client:
        answer = await client.post(CLASSIFY, **png_body(unique_png(6)))
        feedback = await client.post(
            FEEDBACK, json={"request_id": answer.json()["request_id"], "labels": {"color": "red"}}
        )
        queue = await client.get("/api/labels/queue")
        stats = await client.get("/api/stats/regions")
    assert answer.status_code == 200 and stats.status_code == 200
    for response in (feedback, queue):
        error = assert_error(response, 503, "store_unavailable")
        assert "sqlite:/// or postgresql://" in error["message"] and int(response.headers["retry-after"]) >= 1
