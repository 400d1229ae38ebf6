"""The review API: the queue's order, and confirm, correct, skip and reject as the store records them."""

from __future__ import annotations

import pytest
from learning_helpers import QUEUE, label_store, png_body, queued
from litestar.testing import AsyncTestClient
from serving_helpers import CLASSIFY, assert_error, unique_png

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


def review(item_id: str) -> str:
    return f"/api/labels/{item_id}"


async def test_confirm_correct_skip_and_reject_shape_the_queue_and_the_labels(learning_app):
    app, settings = learning_app(review_uniform_share=1.0)
    async with AsyncTestClient(app) as client:
        for seed in range(4):
            await client.post(CLASSIFY, **png_body(unique_png(600 + seed), "west"))
    # The app stopped: the four kept items are written. A second app on the same store reviews them.
    app, _ = learning_app(review_uniform_share=1.0)
    async with AsyncTestClient(app) as client:
        before = (await client.get(QUEUE)).json()
        items = before["items"]
        first, second, third, fourth = (item["item_id"] for item in items)
        guess = items[1]["predictions"]
        other_colour = items[1]["classes"]["color"][1]
        answers = {
            "confirm": await client.post(review(first), json={"action": "confirm"}),
            "correct": await client.post(review(second), json={"action": "correct", "labels": {"color": other_colour}}),
            "skip": await client.post(review(third), json={"action": "skip"}),
            "reject": await client.post(review(fourth), json={"action": "reject"}),
        }
        after = (await client.get(QUEUE)).json()

    margins = [min(item["margin"].values()) for item in items]
    assert before["queued"] == 4 and before["regions"] == {"west": 4}
    assert margins == sorted(margins), "the lowest margin comes first"
    assert {a: r.json()["status"] for a, r in answers.items()} == {
        "confirm": "created",
        "correct": "created",
        "skip": "skipped",
        "reject": "rejected",
    }
    assert [item["item_id"] for item in after["items"]] == [third] and after["items"][0]["skipped"] is True
    assert after["queued"] == 1
    with label_store(settings) as store:
        confirmed, corrected = store.label(first), store.label(second)
        harvestable = {row.item_id for row in store.harvestable()}
        scored = {row.item_id for row in store.labelled_rows()}
    assert confirmed.labels == {a: p["label"] for a, p in items[0]["predictions"].items()}
    assert corrected.labels == {"vehicle_type": guess["vehicle_type"]["label"], "color": other_colour}
    assert confirmed.source == corrected.source == "review" and confirmed.labelled_by == "operator"
    assert harvestable == scored == {first, second}  # the rejected one is neither trained on nor scored


async def test_review_errors_name_what_is_accepted(learning_app):
    app, _ = learning_app(review_uniform_share=1.0)
    async with AsyncTestClient(app) as client:
        item_id = (await client.post(CLASSIFY, **png_body(unique_png(700)))).json()["request_id"]
        await queued(client, 1)
        bad_class = await client.post(review(item_id), json={"action": "correct", "labels": {"color": "plaid"}})
        stray_labels = await client.post(review(item_id), json={"action": "confirm", "labels": {"color": "red"}})
        bad_action = await client.post(review(item_id), json={"action": "approve"})
        unknown = await client.post(review("never-kept"), json={"action": "confirm"})
        bad_id = await client.post(review("a%20b"), json={"action": "confirm"})
        no_image = await client.get(f"{review('never-kept')}/image")
        bad_region = await client.get(QUEUE, params={"region": "no/such"})
    assert "allowed" in assert_error(bad_class, 422, "invalid_label")["message"]
    assert_error(stray_labels, 422, "unexpected_labels")
    assert_error(bad_action, 400, "invalid_request")
    assert_error(unknown, 404, "item_not_found")
    assert_error(bad_id, 400, "invalid_item_id")
    assert_error(no_image, 404, "item_not_found")
    assert_error(bad_region, 400, "invalid_region")
