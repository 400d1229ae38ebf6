"""No client can read or label another client's predictions; only the operator reviews kept images."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import httpx
import pytest
from learning_helpers import FEEDBACK, QUEUE, label_store
from litestar.testing import AsyncTestClient
from serving_helpers import CLASSIFY, assert_error, unique_png

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

ALICE, BOB, OPERATOR = "alice-key-5b1e", "bob-key-90c4", "operator-key-77d1"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"reviewer:{password}".encode()).decode()}


@pytest.fixture
def keyed(learning_app):
    return learning_app(
        client_keys=f"alice:{digest(ALICE)},bob:{digest(BOB)}",
        operator_key_sha256=digest(OPERATOR),
        review_uniform_share=1.0,
    )


async def test_another_clients_answer_is_404_and_cannot_be_labelled(keyed):
    app, settings = keyed
    async with AsyncTestClient(app) as client:
        answer = await client.post(
            CLASSIFY, content=unique_png(1), headers={**bearer(ALICE), "Content-Type": "image/png"}
        )
        request_id = answer.json()["request_id"]
        label = {"request_id": request_id, "labels": {"color": "red"}}
        by_bob = await client.post(FEEDBACK, json=label, headers=bearer(BOB))
        by_bob_replacing = await client.post(FEEDBACK, json={**label, "replace": True}, headers=bearer(BOB))
        by_nobody = await client.post(FEEDBACK, json=label)
        never = await client.post(FEEDBACK, json={**label, "request_id": "no-such-answer"}, headers=bearer(BOB))
        by_alice = await client.post(FEEDBACK, json=label, headers=bearer(ALICE))

    # Bob learns nothing: the same answer as for an id that never existed.
    assert_error(by_bob, 404, "prediction_not_found")
    assert_error(by_bob_replacing, 404, "prediction_not_found")
    assert by_bob.json()["error"]["message"].replace(request_id, "X") == never.json()["error"]["message"].replace(
        "no-such-answer", "X"
    )
    assert_error(by_nobody, 401, "missing_credentials")
    assert by_alice.status_code == 200 and by_alice.json()["status"] == "created"
    with label_store(settings) as store:
        assert store.label(request_id).labelled_by == "alice"


async def test_a_reused_request_id_cannot_take_over_another_clients_answer(keyed):
    app, settings = keyed
    shared = {"X-Request-ID": "order-1234", "Content-Type": "image/png"}
    async with AsyncTestClient(app) as client:
        first = await client.post(CLASSIFY, content=unique_png(2), headers={**bearer(ALICE), **shared})
        second = await client.post(CLASSIFY, content=unique_png(3), headers={**bearer(BOB), **shared})
        label = {"request_id": "order-1234", "labels": {"color": "red"}}
        by_bob = await client.post(FEEDBACK, json=label, headers=bearer(BOB))
        by_alice = await client.post(FEEDBACK, json=label, headers=bearer(ALICE))
    assert first.json()["request_id"] == second.json()["request_id"] == "order-1234"
    assert_error(by_bob, 404, "prediction_not_found")
    assert by_alice.status_code == 200
    with label_store(settings) as store:
        item = store.item("order-1234")
    assert item.client == "alice"  # Bob's image under the same id was not kept in its place


async def test_only_the_operator_reads_the_queue_and_the_images(keyed):
    app, _ = keyed
    async with AsyncTestClient(app) as client:
        request_id = (
            await client.post(CLASSIFY, content=unique_png(4), headers={**bearer(ALICE), "Content-Type": "image/png"})
        ).json()["request_id"]
        image = f"/api/labels/{request_id}/image"
        as_alice = [await client.get(QUEUE, headers=bearer(ALICE)), await client.get(image, headers=bearer(ALICE))]
        as_nobody = [await client.get(QUEUE), await client.get(image), await client.get("/label")]
        wrong = await client.get(QUEUE, headers=basic("not-the-key"))
        review = await client.post(f"/api/labels/{request_id}", json={"action": "confirm"}, headers=bearer(BOB))
        as_operator = await client.get(QUEUE, headers=bearer(OPERATOR))
        in_browser = [
            await client.get(image, headers=basic(OPERATOR)),
            await client.get("/label", headers=basic(OPERATOR)),
        ]

    for response in as_alice:
        assert_error(response, 401, "invalid_credentials")
    for response in as_nobody:
        error = assert_error(response, 401, "missing_credentials")
        assert "operator key" in error["message"]
        assert response.headers["www-authenticate"].startswith("Basic")  # a browser asks for the key
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(review, 401, "invalid_credentials")
    assert as_operator.status_code == 200
    assert [item["item_id"] for item in as_operator.json()["items"]] == [request_id]
    assert [r.status_code for r in in_browser] == [200, 200]
    assert in_browser[0].headers["content-type"] == "image/png"


async def test_without_keys_reviewing_answers_only_on_loopback(learning_app):
    app, _ = learning_app()

    async def queue_via(server_address: str) -> httpx.Response:
        # In-process ASGI calls (no traffic): the base URL is the address the server reports.
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{server_address}:8000") as client:
            return await client.get(QUEUE)

    async with AsyncTestClient(app):  # the lifespan opens the label store
        public = await queue_via("192.0.2.10")
        loopback = await queue_via("127.0.0.1")
    assert "OPERATOR_KEY_SHA256" in assert_error(public, 403, "review_disabled")["message"]
    assert loopback.status_code == 200 and loopback.json()["items"] == []


async def test_an_id_reused_after_its_receipt_expired_never_labels_the_older_kept_image(learning_app):
    app, settings = learning_app(
        client_keys=f"alice:{digest(ALICE)},bob:{digest(BOB)}", review_uniform_share=1.0, feedback_window_seconds=1
    )
    shared = {"X-Request-ID": "order-77", "Content-Type": "image/png"}
    async with AsyncTestClient(app) as client:
        await client.post(CLASSIFY, content=unique_png(5), headers={**bearer(ALICE), **shared})
        await asyncio.sleep(2.5)  # Alice's receipt expires; her kept image stays for the retention window
        await client.post(CLASSIFY, content=unique_png(6), headers={**bearer(BOB), **shared})
        label = {"request_id": "order-77", "labels": {"color": "red"}}
        by_bob = await client.post(FEEDBACK, json=label, headers=bearer(BOB))
    assert "fresh X-Request-ID" in assert_error(by_bob, 409, "request_id_reused")["message"]
    with label_store(settings) as store:
        assert store.item("order-77").client == "alice" and store.label("order-77") is None
