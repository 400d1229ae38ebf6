"""``vehicles serve`` against a model the training flow produced: every endpoint, then a promotion.

The tests of this module run in file order against one server process: serve a copy of the
store the session's ``vehicles train`` left (conftest.py) with a real Redis (keys under a prefix
of this module's own), call each endpoint, train and promote a second version with the CLI and
watch the server pick it up, then stop it with SIGTERM. The server is killed at teardown
whatever happened.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from e2e_support import MODEL, QUICK_TRAINING, Sandbox, TrainedStore, free_port, tail, wait_for_http
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from vehicle_model.decisions import CONFIDENT, DECISIONS

pytestmark = pytest.mark.e2e

TRAIN_TIMEOUT = 300
READY_TIMEOUT = 180
PROMOTION_TIMEOUT = 90
STATS_FLUSH_TIMEOUT = 30
STOP_TIMEOUT = 30
API_KEY = "secret"
REGION = "eu-west"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Server:
    """The running ``vehicles serve`` process and what a test needs to reach and inspect it."""

    process: subprocess.Popen
    log: Path
    url: str
    log_dir: Path
    prefix: str

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, trust_env=False)


@dataclass(frozen=True)
class Images:
    """Real dataset images (bytes) and their labels."""

    blobs: list[bytes]
    names: list[str]
    labels: dict[str, set[str]]


def _wait_until(check: Callable[[], Any], timeout: float, what: str, server: Server) -> Any:
    """Polls ``check`` until it returns something truthy; fails with the server log after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode} while waiting for {what}:\n{tail(server.log)}")
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what} not seen within {timeout} s (last: {last!r}):\n{tail(server.log)}")


def _metrics(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: (sample name, sorted labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _sum(metrics: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in metrics.items() if n == name and labels.items() <= dict(ls).items())


def _assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def _assert_prediction(predictions: dict, labels: dict[str, set[str]], k: int) -> None:
    assert set(predictions) == set(labels)
    for attribute, result in predictions.items():
        ranked = result["top_k"]
        assert len(ranked) == min(k, len(labels[attribute]))
        assert {item["label"] for item in ranked} <= labels[attribute]
        probabilities = [item["probability"] for item in ranked]
        assert probabilities == sorted(probabilities, reverse=True)
        assert result["label"] == ranked[0]["label"]
        confidence = result["confidence"]
        assert set(confidence) == {"max_probability", "margin", "entropy", "normalized_entropy"}
        assert confidence["max_probability"] == pytest.approx(probabilities[0], abs=1e-6)
        assert 0 < confidence["max_probability"] <= 1
        assert 0 <= confidence["margin"] <= confidence["max_probability"]
        assert confidence["entropy"] >= 0 and 0 <= confidence["normalized_entropy"] <= 1 + 1e-9
        assert result["decision"] in DECISIONS
        assert ("reason" in result) == (result["decision"] != CONFIDENT), "a reason exactly when not confident"


@pytest.fixture(scope="module")
def images(tiny_dataset: Path) -> Images:
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    names = frame["image"].tolist()
    return Images(
        blobs=[(tiny_dataset / name).read_bytes() for name in names],
        names=[Path(name).name for name in names],
        labels={attribute: set(frame[attribute].astype(str)) for attribute in ("vehicle_type", "color")},
    )


@pytest.fixture(scope="module")
def redis_prefix(redis_url: str) -> Iterator[tuple[Redis, str]]:
    """A key prefix of this module's own in the session's Redis; its keys are deleted at teardown."""
    redis = Redis.from_url(redis_url, socket_timeout=5)
    redis.ping()
    prefix = f"e2e-serve-{uuid.uuid4().hex}"
    try:
        yield redis, prefix
    finally:
        keys = list(redis.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            redis.delete(*keys)
        redis.close()


@pytest.fixture(scope="module")
def server(trained_sandbox: Sandbox, redis_url: str, redis_prefix: tuple[Redis, str]) -> Iterator[Server]:
    port = free_port()
    log_dir = trained_sandbox.root / "serve-logs"
    env = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": redis_prefix[1],
        "POLL_INTERVAL_SECONDS": "1",
        # Not the production 1 s: on a loaded two-core machine a healthy Redis can take longer to
        # answer, and the server would fall back to memory, which these tests would see as a failure.
        "REDIS_TIMEOUT_SECONDS": "10",
        "API_KEY": API_KEY,
        "LOG_DIR": str(log_dir),
    }
    process, log = trained_sandbox.start(
        [trained_sandbox.command("vehicles"), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ready", process, log, timeout=READY_TIMEOUT)
        yield Server(process, log, url, log_dir, redis_prefix[1])
    finally:
        trained_sandbox.stop(process)


def test_probes_report_the_trained_version_and_redis(server: Server):
    with server.client() as client:
        health = client.get("/health")
        ready = client.get("/ready")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "model_version": "1", "reason": None, "redis": "ok"}
    assert health.headers["x-request-id"] and ready.headers["x-request-id"]


def test_metadata_describes_the_winner_of_training(
    server: Server, trained: TrainedStore, images: Images, trained_sandbox: Sandbox
):
    from mlflow import MlflowClient

    with server.client() as client:
        response = client.get("/api/models/metadata")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["version"], body["alias"], body["candidate"]) == (MODEL, "1", "champion", trained.winner)
    registered = MlflowClient(trained_sandbox.tracking_uri, trained_sandbox.tracking_uri).get_model_version(MODEL, "1")
    assert body["run_id"] == registered.run_id
    assert body["tags"]["candidate"] == trained.winner
    assert {attribute: set(classes) for attribute, classes in body["attributes"].items()} == images.labels
    featurizer = body["featurizer"]
    assert "EfficientNet-Lite0" in featurizer["backbone"]
    assert featurizer["feature_dim"] > 1280 and featurizer["version"]
    assert body["metrics"] and all(isinstance(value, float) for value in body["metrics"].values())
    assert body["loaded_at"]


def test_classify_one_dataset_image(server: Server, images: Images):
    with server.client(**{"X-Request-ID": "e2e-classify-1"}) as client:
        first = client.post("/api/vehicle/classify", files={"file": (images.names[0], images.blobs[0])})
        again = client.post(
            "/api/vehicle/classify", params={"top_k": 2}, files={"file": ("again.bin", images.blobs[0])}
        )

    assert first.status_code == 200, first.text
    assert first.headers["x-request-id"] == "e2e-classify-1"
    body = first.json()
    assert body["model"] == {"name": MODEL, "version": "1"}
    assert body["cached"] is False and body["request_id"] == "e2e-classify-1"
    _assert_prediction(body["predictions"], images.labels, k=3)
    assert body["timing"]["inference_ms"] > 0 and body["timing"]["total_ms"] >= body["timing"]["inference_ms"]

    assert again.status_code == 200, again.text
    repeated = again.json()
    assert repeated["cached"] is True and repeated["timing"]["inference_ms"] == 0
    _assert_prediction(repeated["predictions"], images.labels, k=2)
    for attribute, result in repeated["predictions"].items():
        assert result["top_k"] == body["predictions"][attribute]["top_k"][:2]


def test_classify_batch_answers_good_files_and_rejects_a_text_file(server: Server, images: Images):
    files = [("files", (images.names[i], images.blobs[i])) for i in (1, 2, 3)]
    files.insert(2, ("files", ("notes.txt", b"not an image\n", "text/plain")))
    with server.client() as client:
        response = client.post("/api/vehicle/classify-batch", files=files)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": MODEL, "version": "1"}
    results = body["results"]
    assert [item["index"] for item in results] == [0, 1, 2, 3]
    assert [item["status"] for item in results] == ["ok", "ok", "error", "ok"]
    assert [item["filename"] for item in results] == [images.names[1], images.names[2], "notes.txt", images.names[3]]
    for item in (results[0], results[1], results[3]):
        assert item["error"] is None
        _assert_prediction(item["predictions"], images.labels, k=3)
    bad = results[2]
    assert bad["predictions"] is None
    assert (bad["error"]["status"], bad["error"]["code"]) == (415, "unsupported_format")
    assert "PNG" in bad["error"]["accepted"] and bad["error"]["message"]
    summary = body["summary"]
    assert (summary["total"], summary["ok"], summary["failed"]) == (4, 3, 1)
    assert summary["cache_hits"] == 0
    for attribute in images.labels:
        expected: dict[str, int] = {}
        for item in (results[0], results[1], results[3]):
            label = item["predictions"][attribute]["label"]
            expected[label] = expected.get(label, 0) + 1
        assert summary["class_counts"][attribute] == expected
        decided = [item["predictions"][attribute]["decision"] for item in (results[0], results[1], results[3])]
        assert summary["decisions"][attribute] == {decision: decided.count(decision) for decision in DECISIONS}
    assert body["timing"]["inference_ms"] > 0


def test_reports_are_created_stored_in_redis_and_read_back(
    server: Server, images: Images, redis_prefix: tuple[Redis, str]
):
    redis, prefix = redis_prefix
    with server.client() as client:
        created = client.post(
            "/api/vehicle/report", files={"file": (images.names[4], images.blobs[4])}, data={"vehicle_id": "car-json_1"}
        )
        created_html = client.post(
            "/api/vehicle/report",
            files={"file": (images.names[5], images.blobs[5])},
            data={"vehicle_id": "car-html_2", "format": "html"},
        )
        read = client.get("/api/vehicle/report/car-json_1")
        read_html = client.get("/api/vehicle/report/car-json_1", params={"format": "html"})
        read_other = client.get("/api/vehicle/report/car-html_2")
        missing = client.get("/api/vehicle/report/never-made")

    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/vehicle/report/car-json_1"
    report = created.json()
    assert report["vehicle_id"] == "car-json_1"
    assert report["model"] == {"name": MODEL, "version": "1"}
    _assert_prediction(report["predictions"], images.labels, k=3)
    assert report["created_at"] < report["expires_at"]
    assert set(report["analysis"]) == {"overall_confidence", "low_confidence", "not_confident", "thresholds"}
    assert report["analysis"]["not_confident"] == sorted(
        attribute for attribute, result in report["predictions"].items() if result["decision"] != CONFIDENT
    )
    assert report["recommendations"]

    assert created_html.status_code == 201, created_html.text
    assert created_html.headers["content-type"].startswith("text/html")
    assert created_html.headers["location"] == "/api/vehicle/report/car-html_2"
    assert "car-html_2" in created_html.text and "<table>" in created_html.text

    assert read.status_code == 200 and read.json() == report
    assert read_html.status_code == 200 and read_html.headers["content-type"].startswith("text/html")
    assert "car-json_1" in read_html.text
    for attribute, result in report["predictions"].items():
        assert f"{attribute}: {result['label']}" in read_html.text
        assert f'<span class="badge {result["decision"]}">' in read_html.text
    assert read_other.status_code == 200 and read_other.json()["vehicle_id"] == "car-html_2"

    error = _assert_error(missing, 404, "report_not_found")
    assert "never-made" in error["message"]

    for vehicle_id in ("car-json_1", "car-html_2"):
        key = f"{prefix}:reports:{vehicle_id}"
        assert redis.exists(key), sorted(k.decode() for k in redis.scan_iter(match=f"{prefix}:*"))
        assert 0 < redis.ttl(key) <= 3600
    stored = json.loads(redis.get(f"{prefix}:reports:car-json_1"))
    assert stored.pop("_owner") == "anonymous" and stored == report  # client keys are off here


def test_region_stats_count_endpoints_and_classes(server: Server, images: Images, redis_prefix: tuple[Redis, str]):
    redis, prefix = redis_prefix
    with server.client(**{"X-Region": REGION}) as client:
        single = client.post("/api/vehicle/classify", files={"file": ("a.png", images.blobs[6])})
        batch = client.post(
            "/api/vehicle/classify-batch",
            files=[("files", ("b.png", images.blobs[7])), ("files", ("c.png", images.blobs[8]))],
        )
        report = client.post(
            "/api/vehicle/report", files={"file": ("d.png", images.blobs[9])}, data={"vehicle_id": "region-car"}
        )
        read = client.get("/api/vehicle/report/region-car")
    with server.client() as client:
        one = client.get(f"/api/stats/regions/{REGION}")
        every = client.get("/api/stats/regions")
        unknown = client.get("/api/stats/regions/nowhere")
        invalid = client.get("/api/stats/regions/bad.region")

    assert [r.status_code for r in (single, batch, report, read)] == [200, 200, 201, 200]
    predicted = [
        single.json()["predictions"],
        *(item["predictions"] for item in batch.json()["results"]),
        report.json()["predictions"],
    ]
    expected = {attribute: {} for attribute in images.labels}
    decided = {attribute: dict.fromkeys(DECISIONS, 0) for attribute in images.labels}
    for prediction in predicted:
        for attribute, result in prediction.items():
            expected[attribute][result["label"]] = expected[attribute].get(result["label"], 0) + 1
            decided[attribute][result["decision"]] += 1

    assert one.status_code == 200, one.text
    stats = one.json()
    assert stats["region"] == REGION
    assert stats["requests"] == {"classify": 1, "classify-batch": 1, "report": 1, "report-get": 1}
    assert stats["total_requests"] == 4
    assert stats["predictions"] == expected
    assert stats["decisions"] == decided

    assert every.status_code == 200, every.text
    assert every.json()["storage"] == "redis"
    by_region = {entry["region"]: entry for entry in every.json()["regions"]}
    assert by_region[REGION] == stats
    assert "unknown" in by_region  # requests of the earlier tests carried no X-Region
    _assert_error(unknown, 404, "region_not_found")
    _assert_error(invalid, 400, "invalid_region")

    requests_key = f"{prefix}:stats:region:{REGION}:requests"

    def sent_to_redis() -> dict[str, int]:
        return {k.decode(): int(v) for k, v in redis.hgetall(requests_key).items()}

    # A background task sends the counts (the API adds what is unsent): Redis has them soon, not at once.
    _wait_until(lambda: sent_to_redis() == stats["requests"], STATS_FLUSH_TIMEOUT, "the counts in Redis", server)
    assert redis.type(requests_key) == b"hash"
    assert redis.type(f"{prefix}:stats:region:{REGION}:predictions") == b"hash"
    assert redis.type(f"{prefix}:stats:region:{REGION}:decisions") == b"hash"
    assert REGION.encode() in redis.smembers(f"{prefix}:stats:regions")


def test_docs_render_and_openapi_lists_the_classify_paths(server: Server):
    with server.client() as client:
        docs = client.get("/docs", follow_redirects=True)
        schema = client.get("/docs/openapi.json")

    assert docs.status_code == 200, docs.text
    assert docs.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in docs.text and "/api/vehicle/classify-batch" in docs.text
    assert schema.status_code == 200, schema.text
    document = json.loads(schema.text)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "Vehicle classification API"
    paths = document["paths"]
    for path in ("/api/vehicle/classify", "/api/vehicle/classify-batch", "/api/vehicle/report"):
        assert "post" in paths[path], sorted(paths)
        assert "multipart/form-data" in paths[path]["post"]["requestBody"]["content"]
    assert {
        "/api/vehicle/report/{vehicle_id}",
        "/api/models/metadata",
        "/api/stats/regions",
        "/health",
        "/ready",
        "/admin/reload",
    } <= set(paths)
    error_examples = [
        example["error"] for example in document["components"]["schemas"]["ErrorBody"].get("examples", [])
    ]
    assert all(400 <= error["status"] < 600 for error in error_examples), error_examples


def test_metrics_expose_requests_latency_and_model_state(server: Server, images: Images):
    with server.client() as client:
        before = _metrics(client)
        for _ in range(2):  # a miss, then a hit
            assert client.post("/api/vehicle/classify", files={"file": ("m.png", images.blobs[10])}).status_code == 200
        after = _metrics(client)

    route = {"path": "/api/vehicle/classify", "method": "POST", "status_code": "200"}
    assert _sum(after, "litestar_requests_total", **route) - _sum(before, "litestar_requests_total", **route) == 2
    assert _sum(after, "litestar_request_duration_seconds_count", **route) >= 2
    assert _sum(after, "litestar_request_duration_seconds_bucket", **route, le="+Inf") >= 2
    report_paths = {dict(ls).get("path") for (n, ls) in after if n == "litestar_requests_total"}
    assert "/api/vehicle/report/{vehicle_id}" in report_paths and "/api/vehicle/report/car-json_1" not in report_paths

    assert _sum(after, "vehicle_classify_cache_hits_total") - _sum(before, "vehicle_classify_cache_hits_total") == 1
    assert _sum(after, "vehicle_classify_cache_misses_total") - _sum(before, "vehicle_classify_cache_misses_total") == 1
    for attribute, classes in images.labels.items():
        by_class = {
            dict(ls)["label"]: v
            for (n, ls), v in after.items()
            if n == "vehicle_predictions_total" and dict(ls)["attribute"] == attribute
        }
        assert by_class and set(by_class) <= classes
        delta = sum(by_class.values()) - _sum(before, "vehicle_predictions_total", attribute=attribute)
        assert delta == 2
    assert after[("vehicle_model_info", (("alias", "champion"), ("name", MODEL), ("version", "1")))] == 1
    assert after[("vehicle_model_loaded", ())] == 1
    assert after[("vehicle_redis_up", ())] == 1
    assert after[("vehicle_model_reload_failures_total", ())] == 0
    assert _sum(after, "vehicle_errors_total", status="404", code="report_not_found") >= 1


def test_upload_page_is_served(server: Server):
    with server.client() as client:
        page = client.get("/")

    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert '<form action="/api/vehicle/report"' in page.text and 'type="file"' in page.text


def test_admin_reload_needs_the_api_key(server: Server):
    with server.client() as client:
        missing = client.post("/admin/reload")
        wrong = client.post("/admin/reload", headers={"X-API-Key": "not-the-key"})
        allowed = client.post("/admin/reload", headers={"X-API-Key": API_KEY})

    _assert_error(missing, 401, "missing_api_key")
    _assert_error(wrong, 403, "invalid_api_key")
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["outcome"] == "unchanged"
    assert (allowed.json()["alias_version"], allowed.json()["serving"]) == ("1", "1")


def test_promoted_version_is_picked_up_while_serving(
    server: Server, trained_sandbox: Sandbox, tiny_dataset: Path, images: Images
):
    # A deliberate downgrade on unchanged data: forced, and with a gate that accepts any gain on the tiny test split.
    command = [trained_sandbox.command("vehicles"), "train", "--data", str(tiny_dataset), "-c", "knn", *QUICK_TRAINING]
    promoted = trained_sandbox.run(
        [*command, "--min-improvement", "-1", "--force"],
        timeout=TRAIN_TIMEOUT,
        env={
            "PIPELINE_GATE_MIN_IMAGES": "1",
            "PIPELINE_GATE_MIN_LOWER_BOUND": "-2",
            "PIPELINE_TASK_RUNNER": "thread",  # the process pool is the session training's subject
        },
    )
    assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-4000:]
    assert "Winner knn registered as version 2" in promoted.stdout
    assert "promoted to champion" in promoted.stdout

    with server.client() as client:

        def serving_v2() -> dict | None:
            body = client.get("/api/models/metadata").json()
            return body if body.get("version") == "2" else None

        metadata = _wait_until(serving_v2, PROMOTION_TIMEOUT, "version 2 in /api/models/metadata", server)
        classified = client.post("/api/vehicle/classify", files={"file": (images.names[0], images.blobs[0])})
        ready = client.get("/ready")
        metrics = _metrics(client)

    assert (metadata["alias"], metadata["candidate"]) == ("champion", "knn")
    assert classified.status_code == 200, classified.text
    assert classified.json()["model"] == {"name": MODEL, "version": "2"}
    assert classified.json()["cached"] is False  # version 1's cached answer is not reused
    _assert_prediction(classified.json()["predictions"], images.labels, k=3)
    assert ready.json()["model_version"] == "2"
    versions = {dict(ls)["version"] for (n, ls) in metrics if n == "vehicle_model_info"}
    assert versions == {"2"}
    assert metrics[("vehicle_model_reloads_total", ())] == 2
    assert metrics[("vehicle_model_reload_failures_total", ())] == 0


def test_sigterm_stops_cleanly_and_the_log_holds_no_image_bytes(server: Server, images: Images):
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running {STOP_TIMEOUT} s after SIGTERM:\n{tail(server.log)}")

    output = server.log.read_text(errors="replace")
    assert code in (0, -signal.SIGTERM), output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert "Application shutdown complete" in output, output[-4000:]

    raw = (server.log_dir / "api.log").read_bytes()
    entries = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    access = [e for e in entries if e["logger"] == "serving.access"]
    assert access and all(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", e["request_id"]) for e in access)
    classify = [e for e in access if e["request_id"] == "e2e-classify-1"]
    assert [(e["route"], e["status"]) for e in classify] == [("/api/vehicle/classify", 200)] * 2
    assert any(e["region"] == REGION for e in access)
    assert any("serving version 2" in e["message"] for e in entries)
    assert not [e for e in entries if e["level"] in {"ERROR", "CRITICAL"}]

    text = raw.decode("utf-8")
    for blob in images.blobs[:11]:
        head = blob[:24]
        assert head not in raw
        assert base64.b64encode(head).decode()[:24] not in text
        assert json.dumps(head.decode("latin-1"))[1:-1] not in text
    assert PNG_SIGNATURE not in raw and "not an image" not in text
