"""The shadow challenger in serving: two real registered versions, real Redis, real images.

Clients only ever see the champion; mirrored images become pairs in the shared stream; a shadow
that cannot load, a flooded queue or Redis away fail no request; with the champion's featurizer
version the shadow borrows the champion's backbone instead of holding one of its own.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from pathlib import Path

import mlflow
import onnxruntime
import pytest
from litestar.testing import AsyncTestClient
from mlflow import MlflowClient
from redis import Redis
from serving_helpers import BATCH, CLASSIFY, metric, unique_png

from feedback.shadow import PAIR_FIELD, Pair, shadow_key
from serving.app import create_app
from serving.learning.service import Answer
from serving.shadow.worker import NICENESS
from serving.wiring import build_services
from vehicle_model.featurizer import Featurizer

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

NAME = "vehicle-classifier"


def png(seed: int) -> dict:
    return {"file": ("car.png", unique_png(seed), "image/png")}


def batch_of(seeds: list[int], bad_at: int | None = None) -> list[tuple]:
    files = [("files", (f"{seed}.png", unique_png(seed), "image/png")) for seed in seeds]
    if bad_at is not None:
        files.insert(bad_at, ("files", ("bad.png", b"not an image", "image/png")))
    return files


def set_challenger(registry_uri: str, version: str) -> None:
    MlflowClient(registry_uri).set_registered_model_alias(NAME, "challenger", version)


def stream_pairs(redis_url: str, prefix: str) -> list[Pair]:
    redis = Redis.from_url(redis_url)
    try:
        return [Pair.from_json(fields[PAIR_FIELD.encode()]) for _, fields in redis.xrange(shadow_key(prefix))]
    finally:
        redis.close()


async def eventually(check, what: str, attempts: int = 400, pause: float = 0.05):
    """``await check()`` once it is truthy; fails naming ``what`` after ``attempts``."""
    for _ in range(attempts):
        if result := await check():
            return result
        await asyncio.sleep(pause)
    raise AssertionError(f"never: {what}")


async def shadow_of(client: AsyncTestClient) -> dict:
    async def loaded():
        return (await client.get("/api/models/metadata")).json()["shadow"]

    return await eventually(loaded, "a shadow version in /api/models/metadata")


async def metrics_text(client: AsyncTestClient) -> str:
    return (await client.get("/metrics")).text


def live_sessions() -> int:
    """ONNX Runtime sessions alive in this process."""
    gc.collect()
    return sum(isinstance(o, onnxruntime.InferenceSession) for o in gc.get_objects())


async def test_clients_get_the_champion_and_each_mirrored_image_becomes_a_pair(
    make_settings, registry_uri, registry_template, redis_url, redis_prefix
):
    set_challenger(registry_uri, "2")
    async with AsyncTestClient(create_app(make_settings())) as client:
        shadow = await shadow_of(client)
        singles = [await client.post(CLASSIFY, files=png(i), headers={"X-Region": "north"}) for i in range(3)]
        batch = await client.post(BATCH, files=batch_of([10, 11], bad_at=1), headers={"X-Region": "south"})
        repeat = await client.post(CLASSIFY, files=png(0), headers={"X-Region": "north"})  # a cache hit
        text = await metrics_text(client)
        worker = next(t for t in threading.enumerate() if t.name == "shadow")
        nice = os.getpriority(os.PRIO_PROCESS, worker.native_id)

    answers = [*singles, batch, repeat]
    assert [r.status_code for r in answers] == [200] * 5
    assert {r.json()["model"]["version"] for r in answers} == {"1"}, "clients only ever see the champion"
    assert repeat.json()["cached"]
    assert (shadow["version"], shadow["alias"], shadow["featurizer_shared"]) == ("2", "challenger", True)

    pairs = {pair.item_id: pair for pair in stream_pairs(redis_url, redis_prefix)}
    batch_id = batch.json()["request_id"]
    single_ids = [r.json()["request_id"] for r in singles]
    # The bad file (index 1) has no answer and the cache hit was not inferred: neither is mirrored.
    assert set(pairs) == {*single_ids, f"{batch_id}:0", f"{batch_id}:2"}
    for response, seed in zip(singles, range(3), strict=True):
        pair = pairs[response.json()["request_id"]]
        assert (pair.region, pair.champion.version, pair.challenger.version) == ("north", "1", "2")
        for attribute, result in response.json()["predictions"].items():
            assert pair.champion.answers[attribute][0] == result["label"]
        expected = registry_template.classifiers["2"].predict_bytes([unique_png(seed)])[0]
        for attribute, (label, confidence) in pair.challenger.answers.items():
            assert label == expected[attribute]["label"]
            assert confidence == pytest.approx(expected[attribute]["probabilities"][label], abs=1e-5)
        assert pair.champion.ms > 0 and pair.challenger.ms > 0
    assert pairs[f"{batch_id}:2"].region == "south"

    assert metric(text, "vehicle_model_info", name=NAME, version="1", alias="champion") == 1
    assert metric(text, "vehicle_model_info", name=NAME, version="2", alias="challenger") == 0
    assert metric(text, "vehicle_shadow_model_info", name=NAME, version="2", alias="challenger") == 1
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS), "the shadow yields the CPU to clients"


async def test_a_shadow_that_fails_to_load_changes_nothing_for_clients(make_settings, registry_uri, tmp_path: Path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: [this is: not valid")
    client = MlflowClient(registry_uri, registry_uri=registry_uri)
    version = str(client.create_model_version(NAME, source=str(broken)).version)
    set_challenger(registry_uri, version)
    async with AsyncTestClient(create_app(make_settings())) as client:

        async def failed() -> bool:
            return metric(await metrics_text(client), "vehicle_shadow_reload_failures_total") >= 1

        await eventually(failed, "the broken shadow version counted as a failed load")
        responses = [await client.post(CLASSIFY, files=png(100 + i)) for i in range(4)]
        batch = await client.post(BATCH, files=batch_of([110, 111]))
        ready = await client.get("/ready")
        meta = (await client.get("/api/models/metadata")).json()
        text = await metrics_text(client)
    assert [r.status_code for r in [*responses, batch]] == [200] * 5
    assert {r.json()["model"]["version"] for r in [*responses, batch]} == {"1"}
    assert ready.status_code == 200 and ready.json()["model_version"] == "1"
    assert meta["version"] == "1" and meta["shadow"] is None
    assert metric(text, "vehicle_model_reload_failures_total") == 0, "the champion's counter is the champion's"
    assert metric(text, "vehicle_shadow_dropped_total", reason="no_shadow") == 6
    assert metric(text, "vehicle_shadow_pairs_total") == 0


async def test_a_flooded_queue_drops_shadow_work_and_fails_no_request(
    make_settings, registry_uri, redis_url, redis_prefix
):
    set_challenger(registry_uri, "2")
    async with AsyncTestClient(create_app(make_settings(shadow_queue_size=1))) as client:
        await shadow_of(client)
        batches = [await client.post(BATCH, files=batch_of(list(range(200 + 16 * b, 216 + 16 * b)))) for b in range(4)]
        singles = await asyncio.gather(*(client.post(CLASSIFY, files=png(300 + i)) for i in range(8)))
        mirrored = 4 * 16 + 8

        async def settled() -> str | None:
            text = await metrics_text(client)
            dropped = metric(text, "vehicle_shadow_dropped_total", reason="queue_full")
            return text if metric(text, "vehicle_shadow_pairs_total") + dropped == mirrored else None

        text = await eventually(settled, "every mirrored image written or counted as dropped")
    assert [r.status_code for r in [*batches, *singles]] == [200] * 12
    assert {r.json()["model"]["version"] for r in [*batches, *singles]} == {"1"}
    dropped = metric(text, "vehicle_shadow_dropped_total", reason="queue_full")
    assert dropped >= 1, "a queue of one cannot hold a batch of sixteen"
    assert len(stream_pairs(redis_url, redis_prefix)) == mirrored - dropped


async def test_redis_away_drops_pairs_and_fails_no_request(make_settings, registry_uri, throwaway_redis):
    set_challenger(registry_uri, "2")
    settings = make_settings(redis_url=throwaway_redis.url)  # never started
    async with AsyncTestClient(create_app(settings)) as client:
        await shadow_of(client)
        responses = [await client.post(CLASSIFY, files=png(400 + i)) for i in range(3)]

        async def dropped() -> bool:
            return metric(await metrics_text(client), "vehicle_shadow_dropped_total", reason="redis_unavailable") >= 3

        await eventually(dropped, "three pairs dropped while Redis is away")
    assert [r.status_code for r in responses] == [200] * 3


async def test_an_empty_shadow_alias_turns_the_shadow_off(make_settings, registry_uri, redis_url, redis_prefix):
    set_challenger(registry_uri, "2")
    async with AsyncTestClient(create_app(make_settings(shadow_alias=""))) as client:
        response = await client.post(CLASSIFY, files=png(500))
        meta = (await client.get("/api/models/metadata")).json()
        text = await metrics_text(client)
    assert response.status_code == 200 and meta["shadow"] is None
    assert "vehicle_shadow_pairs_total" not in text
    assert stream_pairs(redis_url, redis_prefix) == []


async def test_a_shadow_on_the_champions_featurizer_borrows_its_backbone_and_follows_a_new_champion(
    make_settings, registry_uri
):
    services = build_services(make_settings())
    await services.start()
    try:
        sessions = live_sessions()
        set_challenger(registry_uri, "2")
        shadow = await eventually(lambda: asyncio.sleep(0, services.shadow.models.current), "shadow loaded")
        champion = services.models.require()
        assert shadow.classifier.featurizer is champion.classifier.featurizer
        assert shadow.wide is None and live_sessions() == sessions, "no second backbone session"
        assert shadow.classifier.heads is not champion.classifier.heads
        del shadow, champion  # the test's own references would keep version 1's sessions alive

        MlflowClient(registry_uri).set_registered_model_alias(NAME, "champion", "2")

        async def reborrowed():
            now, held = services.models.current, services.shadow.models.current
            return now.version == "2" and held.classifier.featurizer is now.classifier.featurizer

        await eventually(reborrowed, "the shadow borrowing the new champion's backbone")
        assert live_sessions() <= sessions, "the old champion's session is not kept alive by the shadow"
    finally:
        await services.stop()


async def test_a_shadow_whose_alias_is_gone_lets_its_version_go_and_mirrors_nothing(
    make_settings, registry_uri, redis_url, redis_prefix
):
    set_challenger(registry_uri, "2")
    async with AsyncTestClient(create_app(make_settings())) as client:
        await shadow_of(client)
        MlflowClient(registry_uri).delete_registered_model_alias(NAME, "challenger")  # as a promotion leaves it

        async def released():
            return (await client.get("/api/models/metadata")).json()["shadow"] is None

        await eventually(released, "the shadow letting version 2 go")
        response = await client.post(CLASSIFY, files=png(700))
        text = await metrics_text(client)
    assert response.status_code == 200 and response.json()["model"]["version"] == "1"
    assert metric(text, "vehicle_shadow_model_info", name=NAME, version="2", alias="challenger") == 0
    assert metric(text, "vehicle_model_info", name=NAME, version="1", alias="champion") == 1
    assert stream_pairs(redis_url, redis_prefix) == []


@pytest.fixture
def int8_version(registry_uri: str, tiny_dataset: Path, tmp_path: Path) -> str:
    """A third version whose heads were trained on the INT8 backbone: another featurizer version."""
    from sklearn.linear_model import LogisticRegression

    from tasks.data.dataset import load_dataset
    from tasks.registry.versions import log_classifier, register_version
    from vehicle_model.model import VehicleClassifier

    frame = load_dataset(tiny_dataset).frame.iloc[:40]
    featurizer = Featurizer(precision="int8")
    features = featurizer.transform_paths(frame["image"].tolist())
    heads = {a: LogisticRegression(max_iter=1000).fit(features, frame[a].tolist()) for a in ("vehicle_type", "color")}
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registry_uri)
    try:
        experiment = mlflow.create_experiment("shadow-int8", artifact_location=str(tmp_path / "int8-artifacts"))
        with mlflow.start_run(experiment_id=experiment):
            info = log_classifier(VehicleClassifier(featurizer, heads), {"candidate": "logistic_regression"})
        return str(register_version(info.model_uri, NAME, {"candidate": "logistic_regression"}).version)
    finally:
        mlflow.set_tracking_uri(previous)


async def test_a_shadow_on_another_featurizer_embeds_itself_on_one_thread(
    make_settings, registry_uri, int8_version, redis_url, redis_prefix
):
    services = build_services(make_settings())
    await services.start()
    try:
        champion = services.models.require()
        sessions = live_sessions()
        set_challenger(registry_uri, int8_version)
        shadow = await eventually(lambda: asyncio.sleep(0, services.shadow.models.current), "shadow loaded")
        assert shadow.classifier.featurizer is not champion.classifier.featurizer
        assert shadow.classifier.featurizer.threads == 1 and shadow.wide is None
        assert live_sessions() == sessions + 1, "one session of its own, on one thread"
        assert services.shadow.describe()["featurizer_shared"] is False
        result = await services.predictor.classify([unique_png(600)], "east")
        answer = Answer("shadow-int8-1", result.outcomes[0].prediction, unique_png(600))
        services.shadow.answered("east", result, [answer])
    finally:
        await services.stop()  # scores what is queued and writes it
    [pair] = stream_pairs(redis_url, redis_prefix)
    assert (pair.item_id, pair.champion.version, pair.challenger.version) == ("shadow-int8-1", "1", int8_version)
    assert set(pair.challenger.answers) == {"vehicle_type", "color"} and pair.challenger.ms > 0
