"""Every endpoint against a real registered model and a real Redis."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from litestar.testing import AsyncTestClient
from serving_helpers import BATCH, CLASSIFY, REPORT, assert_error, metric, unique_png

from serving.app import create_app

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


def upload(data: bytes, name: str = "car.jpg", field: str = "file") -> dict:
    return {field: (name, data, "application/octet-stream")}


async def test_health_and_ready(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "model_version": "1", "reason": None, "redis": "ok"}


async def test_classify_gives_top_k_confidence_version_and_timing(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        response = await client.post(CLASSIFY, files=upload(sample_images["jpeg"]), params={"top_k": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "vehicle-classifier", "version": "1"}
    assert set(body["predictions"]) == {"vehicle_type", "color"}
    for result in body["predictions"].values():
        ranked = result["top_k"]
        assert len(ranked) == 2 and ranked[0]["probability"] >= ranked[1]["probability"]
        assert result["label"] == ranked[0]["label"]
        confidence = result["confidence"]
        assert confidence["max_probability"] == pytest.approx(ranked[0]["probability"], abs=1e-5)
        assert confidence["margin"] == pytest.approx(ranked[0]["probability"] - ranked[1]["probability"], abs=1e-5)
        assert 0 <= confidence["normalized_entropy"] <= 1 and confidence["entropy"] >= 0
    assert body["cached"] is False
    assert set(body["timing"]) == {"total_ms", "inference_ms"}
    assert body["request_id"] == response.headers["x-request-id"]


async def test_classify_default_top_k_is_three_and_limits_are_checked(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        default = await client.post(CLASSIFY, files=upload(sample_images["png"]))
        too_small = await client.post(CLASSIFY, files=upload(sample_images["png"]), params={"top_k": 0})
        not_a_number = await client.post(CLASSIFY, files=upload(sample_images["png"]), params={"top_k": "x"})
        no_file = await client.post(CLASSIFY, files=upload(sample_images["png"], field="image"))
    assert all(len(r["top_k"]) == 3 for r in default.json()["predictions"].values())
    assert "top_k" in assert_error(too_small, 400, "invalid_request")["message"]
    assert_error(not_a_number, 400, "invalid_request")
    assert "file" in assert_error(no_file, 400, "invalid_request")["message"]


async def test_repeated_upload_is_a_cache_hit(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        first = await client.post(CLASSIFY, files=upload(sample_images["jpeg"]))
        second = await client.post(CLASSIFY, files=upload(sample_images["jpeg"], name="other-name.jpg"))
        metrics = (await client.get("/metrics")).text
    assert first.json()["cached"] is False and second.json()["cached"] is True
    assert second.json()["predictions"] == first.json()["predictions"]
    assert metric(metrics, "vehicle_classify_cache_hits_total") == 1
    assert metric(metrics, "vehicle_classify_cache_misses_total") == 1
    assert metric(metrics, "vehicle_inference_seconds_count", kind="single") == 1


async def test_batch_with_one_bad_file_reports_it_and_classifies_the_rest(make_settings, sample_images):
    files = [
        ("files", ("a.jpg", sample_images["jpeg0"], "image/jpeg")),
        ("files", ("notes.txt", b"not an image", "text/plain")),
        ("files", ("b.png", sample_images["png"], "image/png")),
    ]
    async with AsyncTestClient(create_app(make_settings())) as client:
        response = await client.post(BATCH, files=files, headers={"X-Region": "eu-west"})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200
    body = response.json()
    assert [item["status"] for item in body["results"]] == ["ok", "error", "ok"]
    assert [item["filename"] for item in body["results"]] == ["a.jpg", "notes.txt", "b.png"]
    bad = body["results"][1]["error"]
    assert bad["status"] == 415 and bad["code"] == "unsupported_format" and "PNG" in bad["accepted"]
    summary = body["summary"]
    assert (summary["total"], summary["ok"], summary["failed"]) == (3, 2, 1)
    assert sum(summary["class_counts"]["vehicle_type"].values()) == 2
    assert body["model"]["version"] == "1"
    # The two good files went through the model together, in one call.
    assert metric(metrics, "vehicle_inference_seconds_count", kind="batch") == 1
    assert metric(metrics, "vehicle_inference_seconds_count", kind="single") == 0


async def test_batch_refuses_more_files_than_configured(make_settings, sample_images):
    files = [("files", (f"{i}.png", unique_png(i), "image/png")) for i in range(3)]
    async with AsyncTestClient(create_app(make_settings(max_batch_files=2))) as client:
        response = await client.post(BATCH, files=files)
        single = await client.post(BATCH, files=[("files", ("one.png", unique_png(9), "image/png"))])
    error = assert_error(response, 413, "too_many_files")
    assert error["limit_files"] == 2
    assert single.status_code == 200 and single.json()["summary"]["ok"] == 1


async def test_report_is_stored_and_returned_as_json_and_html(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        created = await client.post(REPORT, files=upload(sample_images["jpeg"]), data={"vehicle_id": "truck_42-A"})
        as_json = await client.get(f"{REPORT}/truck_42-A")
        as_html = await client.get(f"{REPORT}/truck_42-A", params={"format": "html"})
    assert created.status_code == 201
    assert created.headers["location"] == f"{REPORT}/truck_42-A"
    report = created.json()
    assert report["vehicle_id"] == "truck_42-A"
    assert report["model"]["version"] == "1"
    assert set(report["predictions"]) == {"vehicle_type", "color"}
    assert set(report["analysis"]) == {"overall_confidence", "low_confidence", "not_confident", "thresholds"}
    assert report["recommendations"]
    assert as_json.status_code == 200 and as_json.json() == report
    assert as_html.status_code == 200 and as_html.headers["content-type"].startswith("text/html")
    assert "truck_42-A" in as_html.text
    assert report["predictions"]["vehicle_type"]["label"] in as_html.text


async def test_report_gets_an_id_when_none_given_and_can_answer_html(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        created = await client.post(REPORT, files=upload(sample_images["png"]), data={"format": "html"})
        by_query = await client.post(REPORT, files=upload(sample_images["png"]), params={"format": "json"})
    assert created.status_code == 201 and created.headers["content-type"].startswith("text/html")
    vehicle_id = created.headers["location"].rsplit("/", 1)[1]
    assert len(vehicle_id) == 32 and vehicle_id in created.text
    assert by_query.json()["vehicle_id"] != vehicle_id


async def test_report_flags_low_confidence_with_recommendations(make_settings, sample_images):
    settings = make_settings(low_confidence_threshold=1.0)
    async with AsyncTestClient(create_app(settings)) as client:
        report = (await client.post(REPORT, files=upload(sample_images["jpeg"]))).json()
    assert report["analysis"]["low_confidence"] == ["color", "vehicle_type"]
    assert len(report["recommendations"]) == 2
    assert all("low confidence" in line for line in report["recommendations"])


async def test_report_rejects_bad_vehicle_ids_and_explains_missing_reports(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        bad_post = await client.post(REPORT, files=upload(sample_images["jpeg"]), data={"vehicle_id": "../etc"})
        too_long = await client.get(f"{REPORT}/{'a' * 65}")
        bad_get = await client.get(f"{REPORT}/a.b")
        missing = await client.get(f"{REPORT}/never-made")
        bad_format = await client.get(f"{REPORT}/never-made", params={"format": "pdf"})
    assert "vehicle_id" in assert_error(bad_post, 400, "invalid_vehicle_id")["message"]
    assert_error(too_long, 400, "invalid_vehicle_id")
    assert_error(bad_get, 400, "invalid_vehicle_id")
    message = assert_error(missing, 404, "report_not_found")["message"]
    assert "never-made" in message and "expired" in message
    assert_error(bad_format, 400, "invalid_request")


async def test_report_expires_after_its_ttl(make_settings, sample_images):
    import asyncio

    # The read right after the write must land inside the TTL, also on a loaded machine: 3 s.
    async with AsyncTestClient(create_app(make_settings(report_ttl_seconds=3))) as client:
        await client.post(REPORT, files=upload(sample_images["jpeg"]), data={"vehicle_id": "short-lived"})
        present = await client.get(f"{REPORT}/short-lived")
        await asyncio.sleep(3.5)
        gone = await client.get(f"{REPORT}/short-lived")
    assert present.status_code == 200
    assert_error(gone, 404, "report_not_found")


async def test_region_stats_count_requests_and_predicted_classes(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        eu = [
            await client.post(CLASSIFY, files=upload(sample_images[k]), headers={"X-Region": "eu-west"})
            for k in ("jpeg", "png")
        ]
        await client.post(BATCH, files=[("files", ("a", sample_images["jpeg1"], "x"))], headers={"X-Region": "us_1"})
        await client.post(CLASSIFY, files=upload(sample_images["jpeg2"]))
        everything = await client.get("/api/stats/regions")
        one = await client.get("/api/stats/regions/eu-west")
        unseen = await client.get("/api/stats/regions/mars")
        bad_path = await client.get("/api/stats/regions/" + "x" * 33)
        bad_header = await client.post(CLASSIFY, files=upload(sample_images["png"]), headers={"X-Region": "eu west!"})
        long_header = await client.post(CLASSIFY, files=upload(sample_images["png"]), headers={"X-Region": "r" * 33})
    assert everything.status_code == 200
    body = everything.json()
    assert body["storage"] == "redis"
    regions = {r["region"]: r for r in body["regions"]}
    assert set(regions) == {"eu-west", "us_1", "unknown"}
    assert regions["us_1"]["requests"] == {"classify-batch": 1}
    assert regions["unknown"]["requests"] == {"classify": 1}
    eu_west = one.json()
    assert eu_west["requests"] == {"classify": 2} and eu_west["total_requests"] == 2
    expected_types: dict[str, int] = {}
    for response in eu:
        label = response.json()["predictions"]["vehicle_type"]["label"]
        expected_types[label] = expected_types.get(label, 0) + 1
    assert eu_west["predictions"]["vehicle_type"] == expected_types
    assert sum(eu_west["predictions"]["color"].values()) == 2
    assert_error(unseen, 404, "region_not_found")
    assert_error(bad_path, 400, "invalid_region")
    assert_error(bad_header, 400, "invalid_region")
    assert_error(long_header, 400, "invalid_region")


async def test_metadata_describes_the_served_version(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        response = await client.get("/api/models/metadata")
    assert response.status_code == 200
    meta = response.json()
    assert (meta["name"], meta["version"], meta["alias"]) == ("vehicle-classifier", "1", "champion")
    assert meta["run_id"] and meta["candidate"] == "logistic_regression"
    assert meta["metrics"]["test_macro_f1"] == pytest.approx(0.6)
    assert set(meta["attributes"]) == {"vehicle_type", "color"} and "sedan" in meta["attributes"]["vehicle_type"]
    assert meta["featurizer"]["feature_dim"] > 1280
    assert meta["loaded_at"]


async def test_docs_render_and_schema_is_valid_openapi(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        page = await client.get("/docs")
        schema_response = await client.get("/docs/openapi.json")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "swagger" in page.text.lower()
    schema = schema_response.json()
    assert schema["openapi"].startswith("3.1")
    paths = schema["paths"]
    for path in (
        CLASSIFY,
        BATCH,
        REPORT,
        f"{REPORT}/{{vehicle_id}}",
        "/api/stats/regions",
        "/api/stats/regions/{region}",
        "/api/models/metadata",
        "/health",
        "/ready",
        "/admin/reload",
    ):
        assert path in paths, path
    for component in schema["components"]["schemas"].values():
        Draft202012Validator.check_schema(component)
    refs = {ref for ref in _refs(schema)}
    names = {f"#/components/schemas/{name}" for name in schema["components"]["schemas"]}
    assert refs <= names
    classify = paths[CLASSIFY]["post"]
    assert "multipart/form-data" in classify["requestBody"]["content"]
    assert {"200", "415", "413", "422"} <= set(classify["responses"])


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


async def test_metrics_expose_requests_predictions_model_and_redis(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        classified = await client.post(CLASSIFY, files=upload(sample_images["jpeg3"]))
        await client.post(CLASSIFY, files=upload(b"GIF89a-nope"))
        text = (await client.get("/metrics")).text
    label = classified.json()["predictions"]["vehicle_type"]["label"]
    assert metric(text, "vehicle_predictions_total", attribute="vehicle_type", label=label) == 1
    assert metric(text, "vehicle_model_info", name="vehicle-classifier", version="1", alias="champion") == 1
    assert metric(text, "vehicle_redis_up") == 1
    assert metric(text, "vehicle_model_reload_failures_total") == 0
    assert (
        metric(text, "vehicle_errors_total", status="422", code="corrupt_image")
        + metric(text, "vehicle_errors_total", status="415", code="unsupported_format")
        == 1
    )
    assert metric(text, "litestar_requests_total", path=CLASSIFY, method="POST", status_code="200") >= 1
    assert metric(text, "litestar_request_duration_seconds_count", path=CLASSIFY, method="POST", status_code="200") >= 1


async def test_index_page_uploads_to_the_html_report(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'action="/api/vehicle/report"' in page.text and 'enctype="multipart/form-data"' in page.text
    assert 'name="format" value="html"' in page.text


async def test_request_id_is_taken_from_the_client_or_generated(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        given = await client.get("/health", headers={"X-Request-ID": "trace-123.abc"})
        hostile = await client.get("/health", headers={"X-Request-ID": "x" * 65})
        unrouted = await client.get("/no/such/route", headers={"X-Request-ID": "trace-404"})
    assert given.headers["x-request-id"] == "trace-123.abc"
    assert len(hostile.headers["x-request-id"]) == 32 and hostile.headers["x-request-id"] != "x" * 65
    assert unrouted.headers["x-request-id"] == "trace-404"
    assert assert_error(unrouted, 404, "not_found")["request_id"] == "trace-404"


async def test_wrong_method_and_unknown_route_use_the_error_shape(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        wrong_method = await client.get(CLASSIFY)
        unknown = await client.delete("/api/vehicle/nothing")
        not_multipart = await client.post(CLASSIFY, json={"file": "x"})
        no_boundary = await client.post(CLASSIFY, content=b"--x--", headers={"Content-Type": "multipart/form-data"})
    assert "POST" in assert_error(wrong_method, 405, "method_not_allowed")["message"]
    assert_error(unknown, 404, "not_found")
    assert_error(not_multipart, 400)
    assert_error(no_boundary, 400)


async def test_body_over_the_limit_is_413(make_settings):
    settings = make_settings(max_body_bytes=100_000, max_file_bytes=100_000)
    async with AsyncTestClient(create_app(settings)) as client:
        response = await client.post(CLASSIFY, files=upload(b"\0" * 150_000))
    error = assert_error(response, 413, "body_too_large")
    assert error["limit_bytes"] == 100_000


async def test_admin_reload_needs_the_key_when_one_is_configured(make_settings):
    async with AsyncTestClient(create_app(make_settings(api_key="s3cret"))) as client:
        missing = await client.post("/admin/reload")
        wrong = await client.post("/admin/reload", headers={"X-API-Key": "guess"})
        right = await client.post("/admin/reload", headers={"X-API-Key": "s3cret"})
    assert_error(missing, 401, "missing_api_key")
    assert_error(wrong, 403, "invalid_api_key")
    assert right.status_code == 200 and right.json()["outcome"] == "unchanged"
    assert right.json()["serving"] == "1"


async def test_admin_is_open_when_no_key_is_configured(make_settings):
    async with AsyncTestClient(create_app(make_settings(api_key=None))) as client:
        response = await client.post("/admin/reload")
    assert response.status_code == 200 and response.json()["outcome"] == "unchanged"


async def test_rate_limit_answers_429_in_the_error_shape(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings(rate_limit_per_minute=3))) as client:
        allowed = [await client.post(CLASSIFY, files=upload(sample_images["png"])) for _ in range(3)]
        limited = await client.post(CLASSIFY, files=upload(sample_images["png"]))
        probes = [await client.get(path) for path in ("/health", "/ready", "/metrics")]
        metrics = (await client.get("/metrics")).text
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) > 0
    assert [r.status_code for r in probes] == [200, 200, 200]
    assert metric(metrics, "litestar_requests_total", path=CLASSIFY, method="POST", status_code="429") == 1


async def test_cors_allows_only_configured_origins(make_settings):
    settings = make_settings(cors_origins=["https://app.example.com"])
    async with AsyncTestClient(create_app(settings)) as client:
        allowed = await client.get("/health", headers={"Origin": "https://app.example.com"})
        other = await client.get("/health", headers={"Origin": "https://evil.example.net"})
        preflight = await client.options(
            CLASSIFY,
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-Region",
            },
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code in (200, 204)
    assert "x-region" in preflight.headers["access-control-allow-headers"].lower()


async def test_logs_are_json_lines_with_the_request_id_and_no_image_bytes(make_settings, sample_images, tmp_path):
    settings = make_settings(log_dir=tmp_path / "api-logs")
    async with AsyncTestClient(create_app(settings)) as client:
        await client.post(
            CLASSIFY,
            files=upload(sample_images["jpeg"], name="secret-name.jpg"),
            headers={"X-Request-ID": "log-check-1"},
        )
    log = (tmp_path / "api-logs" / "api.log").read_text()
    records = [json.loads(line) for line in log.splitlines()]
    access = [r for r in records if r.get("request_id") == "log-check-1"]
    assert access and access[0]["status"] == 200 and access[0]["route"] == CLASSIFY
    assert {"time", "level", "logger", "message", "duration_ms"} <= set(access[0])
    assert "secret-name" not in log
    assert sample_images["jpeg"][:64].hex() not in log and len(log) < 20_000
