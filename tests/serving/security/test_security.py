"""Who may call what: client keys, report ownership, the operator key, admin exposure, and the
headers, CORS and rate-limit answers every client sees."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis import Redis
from serving_helpers import CLASSIFY, REPORT, assert_error, unique_png

from serving.app import create_app
from serving.model.service import ModelService

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

ALICE, BOB, OPERATOR = "alice-key-1f0c", "bob-key-77aa", "operator-key-e3d2"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def image(seed: int) -> dict:
    return {"file": ("car.png", unique_png(seed), "image/png")}


@pytest.fixture
def keyed_app(make_settings, small_model):
    settings = make_settings(
        client_keys=f"alice:{digest(ALICE)},bob:{digest(BOB)}",
        operator_key_sha256=digest(OPERATOR),
        log_level="DEBUG",
    )
    return create_app(settings, model_service=ModelService(None, small_model)), settings


async def test_client_keys_gate_the_api_but_not_probes(keyed_app):
    app, _ = keyed_app
    async with AsyncTestClient(app) as client:
        missing = await client.post(CLASSIFY, files=image(1))
        wrong = await client.post(CLASSIFY, files=image(2), headers=bearer("not-a-key"))
        plain_digest = await client.post(CLASSIFY, files=image(3), headers=bearer(digest(ALICE)))
        good = await client.post(CLASSIFY, files=image(4), headers=bearer(ALICE))
        probes = [await client.get(path) for path in ("/health", "/ready", "/metrics")]
    assert_error(missing, 401, "missing_credentials")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(plain_digest, 401, "invalid_credentials")  # the stored digest is not itself a key
    assert good.status_code == 200
    assert [r.status_code for r in probes] == [200, 200, 200]


async def test_keys_never_reach_the_logs(keyed_app):
    app, settings = keyed_app
    async with AsyncTestClient(app) as client:
        await client.post(CLASSIFY, files=image(5), headers=bearer(ALICE))
        await client.post(CLASSIFY, files=image(6), headers=bearer(BOB + "x"))
    logged = "".join(path.read_text() for path in settings.log_dir.glob("*.log*"))
    assert logged, "the access log was written"
    assert ALICE not in logged and BOB not in logged and digest(ALICE) not in logged


async def test_a_report_belongs_to_its_client_and_is_never_replaced(keyed_app):
    app, _ = keyed_app
    async with AsyncTestClient(app) as client:
        created = await client.post(REPORT, files=image(7), data={"vehicle_id": "car-7"}, headers=bearer(ALICE))
        own = await client.get(f"{REPORT}/car-7", headers=bearer(ALICE))
        other = await client.get(f"{REPORT}/car-7", headers=bearer(BOB))
        again = await client.post(REPORT, files=image(8), data={"vehicle_id": "car-7"}, headers=bearer(ALICE))
        stolen = await client.post(REPORT, files=image(9), data={"vehicle_id": "car-7"}, headers=bearer(BOB))
        after = await client.get(f"{REPORT}/car-7", headers=bearer(ALICE))
    assert created.status_code == 201 and own.status_code == 200
    assert "_owner" not in own.json() and own.json() == created.json()
    assert_error(other, 404, "report_not_found")
    assert_error(again, 409, "report_exists")
    assert_error(stolen, 409, "report_exists")
    assert after.json() == created.json(), "the first report is untouched"


async def test_four_writers_of_one_vehicle_id_get_one_201_and_three_409(make_settings, small_model):
    import asyncio

    app = create_app(make_settings(), model_service=ModelService(None, small_model))
    async with AsyncTestClient(app) as client:
        answers = await asyncio.gather(
            *(client.post(REPORT, files=image(20 + i), data={"vehicle_id": "race-1"}) for i in range(4))
        )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409]


async def test_region_stats_need_the_operator_key_when_clients_need_keys(keyed_app):
    app, _ = keyed_app
    async with AsyncTestClient(app) as client:
        await client.post(CLASSIFY, files=image(10), headers={**bearer(ALICE), "X-Region": "eu"})
        as_client = await client.get("/api/stats/regions", headers=bearer(ALICE))
        anonymous = await client.get("/api/stats/regions/eu")
        as_operator = await client.get("/api/stats/regions/eu", headers=bearer(OPERATOR))
    assert_error(as_client, 401, "invalid_credentials")
    assert_error(anonymous, 401, "missing_credentials")
    assert as_operator.status_code == 200 and as_operator.json()["requests"] == {"classify": 1}


async def test_security_headers_on_every_response(make_settings, small_model):
    app = create_app(make_settings(), model_service=ModelService(None, small_model))
    async with AsyncTestClient(app) as client:
        answers = {
            "page": await client.get("/"),
            "json": await client.get("/health"),
            "error": await client.get("/no/such/route"),
            "report": await client.post(REPORT, files=image(11), data={"format": "html"}),
        }
    for name, response in answers.items():
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["x-frame-options"] == "DENY", name
        assert response.headers["referrer-policy"] == "no-referrer", name
    for name in ("page", "report"):
        policy = answers[name].headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
        assert answers[name].headers["content-type"].startswith("text/html")


async def test_admin_without_a_key_answers_only_loopback(make_settings, small_model):
    app = create_app(make_settings(api_key=None), model_service=ModelService(None, small_model))

    async def reload_via(target, server_address: str) -> httpx.Response:
        # In-process ASGI calls (no traffic): the base URL is the address the server reports.
        transport = httpx.ASGITransport(app=target, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{server_address}:8000") as client:
            return await client.post("/admin/reload")

    assert_error(await reload_via(app, "192.0.2.10"), 403, "admin_disabled")  # bound to a public address
    assert_error(await reload_via(app, "127.0.0.1"), 409, "no_registry")  # loopback reaches the handler
    assert_error(await reload_via(app, "[::1]"), 409, "no_registry")

    opened = create_app(make_settings(api_key=None, admin_open=True), model_service=ModelService(None, small_model))
    assert_error(await reload_via(opened, "192.0.2.10"), 409, "no_registry")


async def test_rate_limit_answers_429_with_retry_after(make_settings, small_model):
    app = create_app(make_settings(rate_limit_per_minute=2), model_service=ModelService(None, small_model))
    async with AsyncTestClient(app) as client:
        answers = [await client.get("/api/models/metadata") for _ in range(3)]
    assert [r.status_code for r in answers[:2]] == [200, 200]
    assert_error(answers[2], 429, "rate_limited")
    assert int(answers[2].headers["retry-after"]) > 0


async def test_cors_answers_only_allowed_origins(make_settings, small_model):
    app = create_app(make_settings(cors_origins=["https://ok.example"]), model_service=ModelService(None, small_model))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Authorization"}
    async with AsyncTestClient(app) as client:
        allowed = await client.get("/health", headers={"Origin": "https://ok.example"})
        denied = await client.get("/health", headers={"Origin": "https://evil.example"})
        denied_preflight = await client.options(CLASSIFY, headers={"Origin": "https://evil.example", **preflight})
        allowed_preflight = await client.options(CLASSIFY, headers={"Origin": "https://ok.example", **preflight})
    assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
    assert not [h for h in denied.headers if h.startswith("access-control-")]
    assert not [h for h in denied_preflight.headers if h.startswith("access-control-allow")]
    assert "authorization" in allowed_preflight.headers["access-control-allow-headers"].lower()


async def test_region_and_vehicle_id_cannot_inject_keys_or_html(make_settings, small_model, redis_url, redis_prefix):
    app = create_app(make_settings(), model_service=ModelService(None, small_model))
    hostile = ["eu:reports:x", "eu*", "<script>alert(1)</script>", "a" * 65]
    async with AsyncTestClient(app) as client:
        regions = [
            await client.post(CLASSIFY, files=image(30 + i), headers={"X-Region": value})
            for i, value in enumerate(hostile)
        ]
        ids = [
            await client.post(REPORT, files=image(40 + i), data={"vehicle_id": value})
            for i, value in enumerate(hostile)
        ]
        lookups = [await client.get(f"{REPORT}/{value}") for value in ("x%3Ay", "%3Cb%3E", "..%2Freports")]
        empty_region = await client.post(CLASSIFY, files=image(50), headers={"X-Region": ""})
        default = await client.get("/api/stats/regions/unknown")
    for response in regions:
        assert_error(response, 400, "invalid_region")
    for response in ids:
        assert_error(response, 400, "invalid_vehicle_id")
    for response in lookups:
        assert response.status_code in (400, 404) and "<" not in response.text
    assert empty_region.status_code == 200 and default.json()["requests"]["classify"] == 1
    keys = list(Redis.from_url(redis_url).scan_iter(match=f"{redis_prefix}*"))
    # The hostile values whole: ids in keys are random hex, so a short fragment such as
    # "aaaa" turns up in them by chance.
    assert keys and not [k for k in keys for value in hostile if value.encode() in k]
    assert not [k for k in keys if b"*" in k or b"<" in k]


async def test_html_report_escapes_what_it_shows(make_settings, small_model):
    app = create_app(make_settings(), model_service=ModelService(None, small_model))
    hostile = "<img src=x onerror=alert(1)>"
    report = {
        "vehicle_id": "esc-1",
        "created_at": hostile,
        "expires_at": hostile,
        "model": {"name": hostile, "version": hostile},
        "predictions": {
            hostile: {
                "label": hostile,
                "top_k": [{"label": hostile, "probability": 0.5}],
                "confidence": {"max_probability": 0.5, "margin": 0.1, "normalized_entropy": 0.2},
            }
        },
        "analysis": {"low_confidence": [hostile]},
        "recommendations": [hostile],
    }
    html = app.template_engine.get_template("report.html").render(report=report)
    assert hostile not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_every_guard_runs_on_the_event_loop(make_settings, small_model):
    """A plain-function guard makes Litestar hand every request to a worker thread and back."""
    import inspect

    for settings in (make_settings(), make_settings(api_key="k", client_keys={"c": "0" * 64})):
        app = create_app(settings, model_service=ModelService(None, small_model))
        guards = [
            g
            for route in app.routes
            for handler in route.route_handlers
            for layer in handler.ownership_layers
            for g in (layer.guards or [])
        ]
        assert guards and all(inspect.iscoroutinefunction(g) for g in guards), guards
