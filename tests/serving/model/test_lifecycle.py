"""Model lifecycle: alias moves, failed loads, no champion, unreachable registry, bounded inference."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from mlflow import MlflowClient
from serving_helpers import CLASSIFY, assert_error, free_port, metric, running_server, unique_png

from serving.app import create_app
from serving.model.runtime import decode_and_predict
from serving.model.service import ModelService, ModelUnavailable
from vehicle_model.images import ImageLimits
from vehicle_model.model import VehicleClassifier
from vehicle_model.records import SUMMARY_DIM

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

NAME = "vehicle-classifier"


async def wait_until(check, attempts: int = 200, pause: float = 0.1):
    """Polls ``check()`` (async) until it returns a truthy value; fails after ``attempts``."""
    for _ in range(attempts):
        if result := await check():
            return result
        await asyncio.sleep(pause)
    raise AssertionError("condition never became true")


async def classify_version(client: AsyncTestClient | httpx.AsyncClient, seed: int) -> tuple[int, str | None]:
    response = await client.post(CLASSIFY, files={"file": ("x.png", unique_png(seed), "image/png")})
    version = response.json()["model"]["version"] if response.status_code == 200 else None
    return response.status_code, version


async def test_alias_move_swaps_versions_under_load_without_failed_requests(make_settings, registry_uri):
    app = create_app(make_settings(poll_interval_seconds=0.5))
    with running_server(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            statuses: list[int] = []
            seen_by_worker: list[list[str]] = [[] for _ in range(4)]
            answers_from_v2 = 0

            async def worker(index: int) -> None:
                nonlocal answers_from_v2
                seed = index * 100_000
                while answers_from_v2 < 12:
                    seed += 1
                    files = {"file": ("x.png", unique_png(seed), "image/png")}
                    response = await http.post(CLASSIFY, files=files)
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        version = response.json()["model"]["version"]
                        seen_by_worker[index].append(version)
                        answers_from_v2 += version == "2"

            workers = [asyncio.create_task(worker(i)) for i in range(4)]
            await wait_until(lambda: asyncio.sleep(0, result=len(statuses) >= 8))
            await asyncio.to_thread(MlflowClient(registry_uri).set_registered_model_alias, NAME, "champion", "2")
            await asyncio.wait_for(asyncio.gather(*workers), timeout=120)
            ready = (await http.get("/ready")).json()
            metrics = (await http.get("/metrics")).text

    assert len(statuses) > 20 and set(statuses) == {200}
    for seen in seen_by_worker:
        # Each worker's requests are sequential: once it saw version 2 it never sees 1 again.
        first_two = seen.index("2") if "2" in seen else len(seen)
        assert set(seen[:first_two]) <= {"1"} and set(seen[first_two:]) <= {"2"}
    assert any(seen and seen[0] == "1" for seen in seen_by_worker)
    assert ready["model_version"] == "2"
    assert metric(metrics, "vehicle_model_reloads_total") == 2  # startup load + the swap
    assert metric(metrics, "vehicle_model_info", name=NAME, version="2", alias="champion") == 1
    assert metric(metrics, "vehicle_model_info", name=NAME, version="1", alias="champion") == 0


async def test_admin_reload_picks_up_an_alias_move_at_once(make_settings, registry_uri):
    app = create_app(make_settings(poll_interval_seconds=3600))
    async with AsyncTestClient(app) as client:
        MlflowClient(registry_uri).set_registered_model_alias(NAME, "champion", "2")
        before = await classify_version(client, 1)
        reload = await client.post("/admin/reload")
        after = await classify_version(client, 2)
    assert before == (200, "1")
    assert reload.json() == {"outcome": "loaded", "alias_version": "2", "serving": "2", "detail": "swapped 1 -> 2"}
    assert after == (200, "2")


def register_broken_version(registry_uri: str, folder: Path) -> str:
    """A version whose artifacts are not a loadable model."""
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: [this is: not valid")
    client = MlflowClient(registry_uri, registry_uri=registry_uri)
    return str(client.create_model_version(NAME, source=str(folder)).version)


async def test_failed_load_keeps_the_old_version_and_counts_the_failure(make_settings, registry_uri, tmp_path):
    app = create_app(make_settings(poll_interval_seconds=0.5))
    async with AsyncTestClient(app) as client:
        broken = register_broken_version(registry_uri, tmp_path / "broken-model")
        MlflowClient(registry_uri).set_registered_model_alias(NAME, "champion", broken)

        async def failure_counted() -> bool:
            text = (await client.get("/metrics")).text
            return metric(text, "vehicle_model_reload_failures_total") >= 1

        await wait_until(failure_counted)
        during = [await classify_version(client, seed) for seed in range(5)]
        forced = await client.post("/admin/reload")
        ready = await client.get("/ready")
        metrics = (await client.get("/metrics")).text
    assert during == [(200, "1")] * 5
    assert forced.json()["outcome"] == "failed" and forced.json()["serving"] == "1"
    assert f"version {broken} failed to load" in forced.json()["detail"]
    assert ready.status_code == 200 and ready.json()["model_version"] == "1"
    # One failure from the poll (later polls skip the version) and one from the forced reload.
    assert metric(metrics, "vehicle_model_reload_failures_total") == 2
    assert metric(metrics, "vehicle_model_info", name=NAME, version="1", alias="champion") == 1


async def test_no_champion_gives_503_with_instructions_then_recovers(make_settings, registry_uri):
    MlflowClient(registry_uri).delete_registered_model_alias(NAME, "champion")
    app = create_app(make_settings(poll_interval_seconds=0.5))
    async with AsyncTestClient(app) as client:
        health = await client.get("/health")
        not_ready = await client.get("/ready")
        refused = await client.post(CLASSIFY, files={"file": ("x.png", unique_png(1), "image/png")})
        metadata = await client.get("/api/models/metadata")
        MlflowClient(registry_uri).set_registered_model_alias(NAME, "champion", "2")

        async def is_ready():
            response = await client.get("/ready")
            return response if response.status_code == 200 else None

        ready = await wait_until(is_ready)
        served = await classify_version(client, 2)
    assert health.status_code == 200
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
    assert "vehicles train" in not_ready.json()["reason"]
    error = assert_error(refused, 503, "model_unavailable")
    assert "vehicles train" in error["message"] and "champion" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert_error(metadata, 503, "model_unavailable")
    assert ready.json()["model_version"] == "2"
    assert served == (200, "2")


async def test_unreachable_registry_still_starts_and_says_why(make_settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = make_settings(mlflow_tracking_uri="http://127.0.0.1:1", poll_interval_seconds=60)
    async with AsyncTestClient(create_app(settings)) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
        refused = await client.post(CLASSIFY, files={"file": ("x.png", unique_png(3), "image/png")})
    assert health.status_code == 200
    assert ready.status_code == 503 and "registry unreachable" in ready.json()["reason"]
    assert "registry unreachable" in assert_error(refused, 503, "model_unavailable")["message"]


async def test_tracking_server_down_at_start_then_back_makes_the_app_ready_without_restart(
    make_settings, registry_uri, tmp_path, monkeypatch
):
    # What the compose stack sets: MLflow's own defaults retry a refused connection for minutes.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    port = free_port()  # nothing listens here yet
    settings = make_settings(mlflow_tracking_uri=f"http://127.0.0.1:{port}", poll_interval_seconds=0.5)
    async with AsyncTestClient(create_app(settings)) as client:
        health = await client.get("/health")
        not_ready = await client.get("/ready")
        refused = await client.post(CLASSIFY, files={"file": ("x.png", unique_png(11), "image/png")})
        # A real tracking server over a copy of the registry (champion -> 1) on that port.
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            registry_uri,
            "--default-artifact-root",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        server = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:

            async def is_ready():
                response = await client.get("/ready")
                return response if response.status_code == 200 else None

            ready = await wait_until(is_ready, attempts=1200)  # the server takes a while to start here
            served = await classify_version(client, 12)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    assert health.status_code == 200
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
    assert "registry unreachable" in not_ready.json()["reason"]
    assert_error(refused, 503, "model_unavailable")
    assert ready.json()["model_version"] == "1"
    assert served == (200, "1")


async def test_model_service_serves_a_model_it_is_handed(small_model):
    service = ModelService(None, small_model, inference_threads=1)
    assert service.require() is small_model and service.problem is None
    refreshed = await service.refresh()
    assert (refreshed.outcome, refreshed.serving) == ("unchanged", "1")
    inferred = await service.infer(decode_and_predict, small_model.classifier, [unique_png(5), b"nope"], ImageLimits())
    predictions = inferred.results
    assert set(predictions[0]) == {"vehicle_type", "color"} and predictions[1].reason == "unsupported_format"
    assert inferred.summaries.shape == (1, SUMMARY_DIM), "one summary per predicted image, for the prediction log"
    await service.close()
    with pytest.raises(ModelUnavailable, match="loading"):
        ModelService(None).require()


async def test_inference_is_bounded_and_off_the_event_loop(small_model):
    service = ModelService(None, small_model, inference_threads=2)
    release = threading.Event()
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    def hold() -> None:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        release.wait(timeout=30)
        with lock:
            running["now"] -= 1

    calls = [asyncio.create_task(service.infer(hold)) for _ in range(5)]
    # The loop keeps running while all inference threads are busy.
    await wait_until(lambda: asyncio.sleep(0, result=running["now"] == 2))
    assert not any(call.done() for call in calls)
    release.set()
    await asyncio.gather(*calls)
    await service.close()
    assert running["max"] == 2


async def test_in_flight_request_finishes_on_the_model_it_started_with(registry_uri, sample_images):
    from serving.model.predictor import Predictor
    from serving.model.source import ModelSource
    from serving.monitoring.metrics import ServingMetrics
    from serving.storage.stores import BoundedMemoryStore

    metrics = ServingMetrics()
    service = ModelService(ModelSource(registry_uri, NAME, "champion"), inference_threads=1, metrics=metrics)
    predictor = Predictor(service, BoundedMemoryStore(), metrics, ImageLimits(), cache_ttl=60)
    assert (await service.refresh()).outcome == "loaded"
    release = threading.Event()
    blocker = asyncio.create_task(service.infer(release.wait, 30))  # occupies the only inference thread
    in_flight = asyncio.create_task(predictor.classify([sample_images["jpeg"]]))
    await asyncio.sleep(0.05)
    assert not in_flight.done()
    MlflowClient(registry_uri).set_registered_model_alias(NAME, "champion", "2")
    swapped = await service.refresh()
    release.set()
    old = await in_flight
    new = await predictor.classify([sample_images["jpeg"]])
    await blocker
    await service.close()
    assert swapped.outcome == "loaded" and service.require().version == "2"
    assert old.model.version == "1" and old.outcomes[0].prediction is not None
    assert new.model.version == "2" and new.outcomes[0].cached is False


async def test_answers_do_not_wait_for_the_cache_write_and_a_repeat_meanwhile_is_cached(registry_uri, sample_images):
    from serving.model.predictor import RESULT_FORMAT, Predictor
    from serving.model.source import ModelSource
    from serving.monitoring.metrics import ServingMetrics
    from serving.storage.stores import BoundedMemoryStore

    class SlowStore(BoundedMemoryStore):
        """Writes land only when the test says so (a slow Redis)."""

        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def set(self, key, value, expires_in=None) -> None:
            await self.release.wait()
            await super().set(key, value, expires_in)

    metrics = ServingMetrics()
    store = SlowStore()
    service = ModelService(ModelSource(registry_uri, NAME, "champion"), inference_threads=1, metrics=metrics)
    predictor = Predictor(service, store, metrics, ImageLimits(), cache_ttl=60)
    assert (await service.refresh()).outcome == "loaded"
    first = await asyncio.wait_for(predictor.classify([sample_images["jpeg"]]), 30)  # the write is still held
    repeat = await predictor.classify([sample_images["jpeg"]])
    assert first.outcomes[0].cached is False and repeat.outcomes[0].cached is True
    assert repeat.outcomes[0].prediction == first.outcomes[0].prediction
    key = (
        f"{first.model.name}:{first.model.version}:{RESULT_FORMAT}:{hashlib.sha256(sample_images['jpeg']).hexdigest()}"
    )
    assert await store.get(key) is None  # not written yet, and nobody waited for it
    store.release.set()
    await predictor.drain()  # what shutdown does: no result is lost
    await service.close()
    assert json.loads(await store.get(key)) == first.outcomes[0].prediction


async def test_python_m_serving_runs_workers_from_the_environment(registry_uri, tmp_path, sample_images):
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
        "MLFLOW_TRACKING_URI": registry_uri,
        "SERVING_PORT": str(port),
        "SERVING_WORKERS": "2",
        "INFERENCE_THREADS": "1",
        "LOG_DIR": str(tmp_path / "logs"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "serving"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

            async def ready():
                try:
                    return (await http.get("/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, attempts=600)
            files = {"file": ("car.jpg", sample_images["jpeg"], "image/jpeg")}
            classified = await http.post(CLASSIFY, files=files)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert classified.status_code == 200 and classified.json()["model"]["version"] == "1"
    assert (tmp_path / "logs" / "api.log").exists()


async def test_a_loaded_version_has_one_session_per_call_share_and_one_on_every_core(registry_uri, sample_images):
    from serving.model.service import with_thread_layout
    from serving.model.source import ModelSource

    service = ModelService(ModelSource(registry_uri, NAME, "champion"), inference_threads=2, onnx_threads=1)
    assert (await service.refresh()).outcome == "loaded"
    model = service.require()
    await service.close()
    narrow, wide = model.classifier.featurizer, model.wide.featurizer
    # Both warmed up at load (sessions exist), separate, with their own thread counts.
    assert "session" in narrow.__dict__ and "session" in wide.__dict__ and narrow.session is not wide.session
    assert (narrow.threads, wide.threads) == (1, len(os.sched_getaffinity(0)))
    assert model.wide.heads is model.classifier.heads
    blob = sample_images["jpeg"]
    assert model.wide.predict_bytes([blob]) == model.classifier.predict_bytes([blob])
    # One call's share already is every core: no second session.
    fresh = dataclasses.replace(model, classifier=VehicleClassifier(copy.copy(narrow), model.classifier.heads))
    assert with_thread_layout(fresh, onnx_threads=2, cores=2).wide is None
