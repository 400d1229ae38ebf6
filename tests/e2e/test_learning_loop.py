"""The learning loop end to end: a region's camera goes dark, the drift is flagged, its images are
kept, labelled by the client and by a reviewer, harvested into the training data, and the retrain
on drift promotes a version that is measurably more accurate there.

The app (``create_app``) runs in this process on a real Redis (keys under a prefix of this
module's own) and a SQLite label store; the flows run in this process on the session's Prefect
server, the harvest as the ``vehicles labels harvest`` command, all on one sandboxed MLflow store.

Retention (images and metadata deleted past the window) is proven on real files by
tests/unit/test_feedback_retention.py and, through ``vehicles labels expire``, by
tests/unit/test_cli_labels.py; client scoping by tests/serving/learning/test_scoping.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from e2e_support import QUICK_CANDIDATES, Sandbox
from litestar.testing import AsyncTestClient
from loop_support import ATTRIBUTES, QUEUE, Answered, Traffic, give_feedback, review, send, traffic, wait_until
from redis import Redis

from feedback.accuracy import difference_interval, online_accuracy
from feedback.store import LabelStore
from flows.ingest import ingest_batch
from flows.monitoring import monitor_drift
from flows.training import TrainingSummary, train_pipeline
from serving.app import create_app
from serving.settings import ServingSettings
from tasks.data.synthetic import generate_dataset
from vehicle_model.records import log_key

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# Two quick candidates whose grids (five points) fit the budget many times over, so every run
# searches them whole and fits the same models; no shifted copies (version 1 never sees a dark
# image), no vote: what the runs cost, not what they prove.
QUICK = {"candidates": list(QUICK_CANDIDATES), "time_budget_seconds": 30, "augment_copies": 0, "vote": False}
ACME, DEPOT, OPERATOR, ADMIN = "acme-key-1f0c", "depot-key-8d2a", "operator-key-4b7e", "admin-key-93aa"
HARVEST_TIMEOUT = 180


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Loop:
    """Where this module's loop keeps its state, and the environment its commands get."""

    sandbox: Sandbox
    root: Path
    labels_url: str
    images_url: str
    redis: Redis
    prefix: str
    env: dict[str, str]


@dataclass(frozen=True)
class Stream:
    """The traffic of the test: daylight from ``day``; from ``night``, what is flagged (``dusk``),
    what is kept and labelled (``night``), and what the new version answers (``later``)."""

    day: Traffic
    dusk: Traffic
    night: Traffic
    later: Traffic


@pytest.fixture(scope="module")
def loop(sandbox: Sandbox, redis_url: str) -> Iterator[Loop]:
    """Settings of the flows in this process (and of the commands) point at the sandbox's stores."""
    review = sandbox.root / "review"
    prefix = f"e2e-loop-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in sandbox.env.items() if k.startswith(("MLFLOW_", "PIPELINE_"))}
    env |= {
        "PIPELINE_TASK_RUNNER": "thread",
        "PIPELINE_GATE_MIN_IMAGES": "10",  # 36 test images: 12 of the tiny set, 24 harvested
        "PIPELINE_TRAINING_DATA": str(sandbox.root / "training-data"),
        "LABELS_DATABASE_URL": f"sqlite:///{review / 'labels.db'}",
        "REVIEW_IMAGES_URL": str(review / "images"),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
    }
    redis = Redis.from_url(redis_url, socket_timeout=10)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        mlflow.set_tracking_uri(sandbox.tracking_uri)
        try:
            yield Loop(
                sandbox,
                Path(env["PIPELINE_TRAINING_DATA"]),
                env["LABELS_DATABASE_URL"],
                env["REVIEW_IMAGES_URL"],
                redis,
                prefix,
                env,
            )
        finally:
            mlflow.set_tracking_uri(None)
            keys = list(redis.scan_iter(match=f"{prefix}:*", count=500))
            if keys:
                redis.delete(*keys)
            redis.close()


@pytest.fixture(scope="module")
def champion(loop: Loop, tiny_dataset: Path) -> TrainingSummary:
    """Version 1, trained on the tiny set's daylight images alone (no shifted copies)."""
    ingest_batch(str(tiny_dataset), into=str(loop.root))
    v1 = train_pipeline(**QUICK)
    assert isinstance(v1, TrainingSummary) and (v1.version, v1.promoted) == ("1", True), v1
    return v1


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """Images version 1 never saw, from the generator that made its training set."""
    root = tmp_path_factory.mktemp("loop-traffic")
    generate_dataset(root, n=330, seed=31)
    return Stream(
        day=traffic(root, slice(0, 50), after_dark=False),
        dusk=traffic(root, slice(50, 100), after_dark=True),
        night=traffic(root, slice(100, 250), after_dark=True),
        later=traffic(root, slice(250, 330), after_dark=True),
    )


def _settings(loop: Loop) -> ServingSettings:
    """Client keys on (feedback is scoped to its client); everything from a drifted region kept."""
    return ServingSettings(
        mlflow_tracking_uri=loop.sandbox.tracking_uri,
        redis_url=loop.env["REDIS_URL"],
        redis_key_prefix=loop.prefix,
        redis_timeout_seconds=10,
        log_dir=loop.sandbox.root / "serve-logs",
        api_key=ADMIN,
        client_keys={"acme": _digest(ACME), "depot": _digest(DEPOT)},
        operator_key_sha256=_digest(OPERATOR),
        rate_limit_per_minute=0,
        cors_origins=[],
        inference_threads=2,
        poll_interval_seconds=3600,  # the new version arrives by POST /admin/reload
        prediction_log_flush_seconds=0.1,
        prediction_log_max_per_second=0,
        labels_database_url=loop.labels_url,
        review_images_url=loop.images_url,
        review_uniform_share=0.0,
        review_uncertain_share=0.0,
        review_drifted_share=1.0,
        review_max_per_hour=1000,
        review_refresh_seconds=0.5,
    )


async def _flag_night(client: AsyncTestClient, loop: Loop, stream: Stream) -> Answered:
    """Daylight and dusk traffic, then the drift monitor: only ``night`` is flagged, and the app
    reads it as drifted. Returns the dusk answers."""
    await send(client, stream.day, "day", _bearer(ACME))
    dusk = await send(client, stream.dusk, "night", _bearer(ACME))
    records = len(stream.day.blobs) + len(stream.dusk.blobs)

    async def logged() -> bool:
        return await asyncio.to_thread(loop.redis.xlen, log_key(loop.prefix)) >= records

    await wait_until(logged, f"{records} records in the prediction log")
    drift = await asyncio.to_thread(monitor_drift, window_minutes=30)
    assert drift.version == "1" and drift.compared == records
    assert drift.regions["night"]["drift"] is True and drift.regions["day"]["drift"] is False, drift.regions

    async def drifted() -> list[str]:
        return (await client.get(QUEUE, headers=_bearer(OPERATOR))).json()["drifted_regions"]

    assert await wait_until(drifted, "night read as drifted") == ["night"]
    return dusk


async def _keep_and_label(client: AsyncTestClient, stream: Stream, dusk: Answered) -> Answered:
    """Night traffic is kept for review; the client labels the dusk answers (not kept: they count
    for online accuracy only) and half the kept ones, which no other client can label; a reviewer
    labels the other half."""
    kept = await send(client, stream.night, "night", _bearer(ACME))

    async def queued() -> dict | None:
        body = (await client.get(QUEUE, params={"region": "night", "limit": 200}, headers=_bearer(OPERATOR))).json()
        return body if body["queued"] == len(kept.item_ids) else None

    queue = await wait_until(queued, "every night image kept")
    assert {tuple(item["reasons"]) for item in queue["items"]} == {("drifted",)}

    unkept = await give_feedback(client, dusk, stream.dusk.truth, _bearer(ACME))
    assert {(reply["kept_image"], reply["trains"]) for reply in unkept} == {(False, False)}
    half = len(kept.item_ids) // 2
    fed_back = await give_feedback(client, kept.rows(slice(0, half)), stream.night.truth[:half], _bearer(ACME))
    assert {(reply["kept_image"], reply["trains"]) for reply in fed_back} == {(True, True)}
    another = {"request_id": kept.item_ids[half], "labels": stream.night.truth[half]}
    assert (await client.post("/api/vehicle/feedback", json=another, headers=_bearer(DEPOT))).status_code == 404
    reviewed = await review(client, kept.rows(slice(half, None)), stream.night.truth[half:], _bearer(OPERATOR))
    assert reviewed["correct"] > 0, "the champion gets night images wrong"
    return kept


def _harvest(loop: Loop) -> dict:
    """``vehicles labels harvest`` into the training data root, as an operator runs it."""
    command = [loop.sandbox.command("vehicles"), "labels", "harvest", "--into", str(loop.root), "--json"]
    result = loop.sandbox.run(command, env=loop.env, timeout=HARVEST_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(next(line for line in reversed(result.stdout.splitlines()) if line.startswith("{")))


def _online(loop: Loop) -> dict[tuple[str, str, str], dict]:
    store = LabelStore(loop.labels_url)
    try:
        return online_accuracy(store.labelled_rows())
    finally:
        store.close()


async def test_labels_from_a_dark_region_train_a_version_more_accurate_there(
    loop: Loop, champion: TrainingSummary, stream: Stream
):
    async with AsyncTestClient(create_app(_settings(loop))) as client:
        dusk = await _flag_night(client, loop, stream)
        kept = await _keep_and_label(client, stream, dusk)

        harvest = await asyncio.to_thread(_harvest, loop)
        assert harvest["regions"] == {"night": len(kept.item_ids)} and harvest["images"] == len(kept.item_ids)
        assert (loop.root / harvest["batch"] / "labels.csv").is_file()

        v2 = await asyncio.to_thread(train_pipeline, trigger="drift", drift_regions=["night"], **QUICK)
        assert isinstance(v2, TrainingSummary) and v2.version == "2", v2
        assert v2.promoted and v2.reason.startswith("beats champion v1"), v2.reason

        reload = await client.post("/admin/reload", headers={"X-API-Key": ADMIN})
        assert reload.status_code == 200 and reload.json()["serving"] == "2", reload.text
        later = await send(client, stream.later, "night", _bearer(ACME))
        assert set(later.versions) == {"2"}
        await give_feedback(client, later, stream.later.truth, _bearer(ACME))

    online = await asyncio.to_thread(_online, loop)
    reviewed = len(kept.item_ids) - len(kept.item_ids) // 2  # kept as drifted: targeted, left out
    print(f"\nGate: {v2.reason}")
    for attribute in ATTRIBUTES:
        before, after = online["1", "night", attribute], online["2", "night", attribute]
        assert before["labelled"] == len(dusk.item_ids) + len(kept.item_ids) - reviewed, before
        assert before["excluded"] == reviewed, before
        assert after["labelled"] == len(later.item_ids)
        low, high = difference_interval((after["correct"], after["labelled"]), (before["correct"], before["labelled"]))
        print(
            f"night {attribute}: v1 {before['accuracy']:.3f} of {before['labelled']} "
            f"[{before['low']:.3f}, {before['high']:.3f}] -> v2 {after['accuracy']:.3f} of {after['labelled']} "
            f"[{after['low']:.3f}, {after['high']:.3f}]; difference {after['accuracy'] - before['accuracy']:+.3f}, "
            f"95% interval [{low:+.3f}, {high:+.3f}]"
        )
        assert low > 0, f"{attribute}: the new version is not clearly better at night ({low:+.3f}, {high:+.3f})"
