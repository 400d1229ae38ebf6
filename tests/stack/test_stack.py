"""The whole stack through its APIs: deployments, a worker, training, two serving replicas
behind nginx, client and operator keys, and the learning loop.

Story (one module, in order): register the deployments; start a worker and two replicas
sharing Redis and a label store; trigger ``train`` with parameters; see a child run per
candidate and their vote, and a champion; both replicas pick it up without restart; reports
and regional stats are shared; a forced second version is promoted and followed; a gated third
version is rejected; a rollback is followed. Then through the proxy: answers are kept for
review, clients give feedback, the operator reviews the rest, both replicas count the labels,
and the ``harvest-labels`` deployment adds them to the worker's training data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pandas as pd
import pytest
from conftest import Stack, start_proxy
from e2e_support import MODEL, REPO, free_port, tail
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.data.ingest import add_batch, check_batch
from tasks.data.validation import ValidationConfig
from tasks.training.candidates import CANDIDATES
from tasks.training.vote import VOTE

pytestmark = pytest.mark.stack

TRAIN = "train-pipeline/train"
NIGHTLY = "train-pipeline/retrain-nightly"
HARVEST = "harvest-labels/harvest-labels-daily"
SHADOW = "shadow-report/shadow-report-hourly"
SHADOW_REGION = "stack-shadow"
POOL = "vehicles-process"
RUN_TIMEOUT = 600
FOLLOW_TIMEOUT = 90
# Keys as the stack configures them: clients and the operator send them, replicas hold digests.
FLEET_KEY, OTHER_KEY, OPERATOR_KEY = "stack-fleet-key", "stack-other-key", "stack-operator-key"
FLEET, OTHER, OPERATOR = ({"Authorization": f"Bearer {key}"} for key in (FLEET_KEY, OTHER_KEY, OPERATOR_KEY))
LOOP_REGION = "stack-loop"
ATTRIBUTES = ("vehicle_type", "color")
SEEDED = 56  # the tiny set's first images are the worker's training data; the loop sends later ones
LOOP_IMAGES = 6


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trigger(stack: Stack, parameters: dict, deployment: str = TRAIN) -> UUID:
    """Starts a run of ``deployment`` through the Prefect API and waits for it to complete."""
    with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
        flow_run = run_deployment(name=deployment, parameters=parameters, timeout=0)
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + RUN_TIMEOUT
            while time.monotonic() < deadline:
                state = client.read_flow_run(flow_run.id).state
                if state is not None and state.is_final():
                    break
                time.sleep(2)
    logs = "\n".join(tail(p, 40) for p in sorted((stack.sandbox.root / "process-logs").glob("*worker*")))
    assert state is not None and state.is_completed(), f"{state}\n{logs}"
    return flow_run.id


def registry(stack: Stack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


def served_versions(replicas: list[str]) -> list[str | None]:
    versions = []
    for url in replicas:
        response = httpx.get(f"{url}/ready", timeout=5, trust_env=False)
        versions.append(response.json()["model_version"])
    return versions


def wait_until_served(replicas: list[str], version: str) -> None:
    """Both replicas serve ``version`` (they poll the alias; nothing restarts them)."""
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while time.monotonic() < deadline:
        if served_versions(replicas) == [version, version]:
            return
        time.sleep(1)
    pytest.fail(f"replicas serve {served_versions(replicas)}, expected v{version} on both")


def training_root(stack: Stack) -> Path:
    """The worker's training data root (``PIPELINE_TRAINING_DATA``): where harvests land."""
    return stack.sandbox.root / "training-data"


def seed_training_root(root: Path, tiny_dataset: Path) -> None:
    """The tiny set's first ``SEEDED`` images as the root's first batch, as ``vehicles ingest`` adds it."""
    first = root.parent / "first-batch"
    first.mkdir()
    frame = pd.read_csv(tiny_dataset / "labels.csv").iloc[:SEEDED]
    frame.assign(image=[str(tiny_dataset / p) for p in frame["image"]]).to_csv(first / "labels.csv", index=False)
    add_batch(check_batch(first, root, ValidationConfig()), root, "0001-first")


@pytest.fixture(scope="module")
def worker(stack: Stack, tiny_dataset: Path) -> Iterator[None]:
    deploy = stack.sandbox.run([stack.sandbox.command("vehicles"), "deploy"], env=stack.env, timeout=240)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    seed_training_root(training_root(stack), tiny_dataset)
    process, log = stack.sandbox.start(
        [stack.sandbox.command("prefect"), "worker", "start", "--pool", POOL],
        cwd=REPO,
        env={
            **stack.env,
            # The replicas' Redis, where the shadow report reads their pairs.
            "REDIS_URL": stack.redis_url,
            "REDIS_KEY_PREFIX": "stack",
            # The tiny test split is too small for the default gate; these let a forced run promote.
            "PIPELINE_GATE_MIN_IMAGES": "1",
            "PIPELINE_GATE_MIN_LOWER_BOUND": "-2",
            "PIPELINE_TRAINING_DATA": str(training_root(stack)),
        },
    )
    yield
    stack.sandbox.stop(process)


@pytest.fixture(scope="module")
def replicas(stack: Stack) -> list[str]:
    """Two ``vehicles serve`` processes on one Redis prefix and one label store, polling the alias
    every second, with client and operator keys, keeping every answered image for review."""
    urls = []
    for _ in range(2):
        port = free_port()
        stack.sandbox.start(
            [stack.sandbox.command("vehicles"), "serve", "--port", str(port)],
            env={
                "MLFLOW_TRACKING_URI": stack.mlflow_uri,
                "REDIS_URL": stack.redis_url,
                "REDIS_KEY_PREFIX": "stack",
                "POLL_INTERVAL_SECONDS": "1",
                "RATE_LIMIT_PER_MINUTE": "0",
                "INFERENCE_THREADS": "1",
                "CLIENT_KEYS": f"fleet:{digest(FLEET_KEY.encode())},other:{digest(OTHER_KEY.encode())}",
                "OPERATOR_KEY_SHA256": digest(OPERATOR_KEY.encode()),
                **stack.labels_env,
                "REVIEW_UNIFORM_SHARE": "1.0",
                "REVIEW_REFRESH_SECONDS": "1",  # the other replica's online accuracy catches up within a second
            },
        )
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 120
    for url in urls:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer /health")
            time.sleep(0.5)
    return urls


@pytest.fixture(scope="module")
def first_run(stack: Stack, worker: None, replicas: list[str], tiny_dataset: Path) -> UUID:
    """Replicas are up (no model yet) before the first training run is triggered."""
    assert served_versions(replicas) == [None, None]
    return trigger(stack, {"data": str(tiny_dataset), "seed": 1, "time_budget_seconds": 3})


def test_deployments_come_from_prefect_yaml(stack: Stack, worker: None):
    with temporary_settings({PREFECT_API_URL: stack.prefect_api}), get_client(sync_client=True) as client:
        train, nightly = client.read_deployment_by_name(TRAIN), client.read_deployment_by_name(NIGHTLY)
    assert train.schedules == [] and train.work_pool_name == POOL
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    assert train.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]


def test_triggered_run_trains_six_candidates_their_vote_and_a_champion(stack: Stack, first_run: UUID):
    client = registry(stack)
    experiment = client.get_experiment_by_name("vehicle-classification")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    [parent] = client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{first_run}'")
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.data.tags["candidate"] for run in children) == sorted([*CANDIDATES, VOTE])
    assert len(CANDIDATES) == 6
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert (champion.version, champion.tags["flow_run_id"]) == ("1", str(first_run))


def test_both_replicas_pick_up_the_champion_and_classify(replicas: list[str], first_run: UUID, tiny_dataset: Path):
    wait_until_served(replicas, "1")
    image = next((tiny_dataset / "images").iterdir()).read_bytes()
    for url in replicas:
        response = httpx.post(
            f"{url}/api/vehicle/classify",
            files={"file": ("car.png", image)},
            headers=FLEET,
            timeout=30,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == {"name": MODEL, "version": "1"}


def test_report_made_on_one_replica_is_read_on_the_other(replicas: list[str], first_run: UUID, tiny_dataset: Path):
    wait_until_served(replicas, "1")
    image = sorted((tiny_dataset / "images").iterdir())[1].read_bytes()
    created = httpx.post(
        f"{replicas[0]}/api/vehicle/report",
        files={"file": ("v.png", image)},
        data={"vehicle_id": "stack-1"},
        headers=FLEET,
        timeout=30,
        trust_env=False,
    )
    assert created.status_code == 201, created.text
    read = httpx.get(f"{replicas[1]}/api/vehicle/report/stack-1", headers=FLEET, timeout=10, trust_env=False)
    assert read.status_code == 200 and read.json() == created.json()


def test_regional_stats_add_up_across_replicas(replicas: list[str], first_run: UUID, tiny_dataset: Path):
    wait_until_served(replicas, "1")
    images = sorted((tiny_dataset / "images").iterdir())[2:8]
    for i, path in enumerate(images):
        url = replicas[i % 2]
        response = httpx.post(
            f"{url}/api/vehicle/classify",
            files={"file": (path.name, path.read_bytes())},
            headers={**FLEET, "X-Region": "stack-north"},
            timeout=30,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
    for url in replicas:
        body = httpx.get(f"{url}/api/stats/regions/stack-north", headers=OPERATOR, timeout=10, trust_env=False).json()
        assert body["total_requests"] == len(images)
        assert body["requests"] == {"classify": len(images)}


def test_promotion_gate_and_rollback_are_followed_by_both_replicas(
    stack: Stack, replicas: list[str], first_run: UUID, tiny_dataset: Path
):
    two = ["logistic_regression", "knn"]
    data = str(tiny_dataset)
    trigger(
        stack,
        {"data": data, "candidates": two, "seed": 2, "time_budget_seconds": 3, "min_improvement": -1.0, "force": True},
    )  # same data as v1: only a forced run trains
    client = registry(stack)
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"
    wait_until_served(replicas, "2")

    trigger(
        stack,
        {"data": data, "candidates": two, "seed": 3, "time_budget_seconds": 3, "min_improvement": 1.0, "force": True},
    )
    rejected = client.get_model_version(MODEL, "3")
    assert rejected.tags["promotion.decision"] == "rejected"
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"
    time.sleep(3)  # three poll intervals: a wrong move would have happened by now
    assert served_versions(replicas) == ["2", "2"]

    rollback = stack.sandbox.run([stack.sandbox.command("vehicles"), "rollback"], env=stack.env, timeout=120)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    wait_until_served(replicas, "1")


def shadow_versions(replicas: list[str]) -> list[str | None]:
    """The version each replica scores in its shadow (None: none loaded)."""
    shadows = [
        httpx.get(f"{url}/api/models/metadata", headers=FLEET, timeout=10, trust_env=False).json() for url in replicas
    ]
    return [body["shadow"]["version"] if body.get("shadow") else None for body in shadows]


def shadow_pairs_written(url: str) -> float:
    """The replica's ``vehicle_shadow_pairs_total``."""
    text = httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("vehicle_shadow_pairs_total"))


def test_both_replicas_shadow_the_challenger_and_one_report_covers_both(
    stack: Stack, replicas: list[str], first_run: UUID, tiny_dataset: Path
):
    """After the rollback the champion is v1 and the rejected v3 is the challenger: each replica
    scores v3 in its shadow, and the hourly report on the worker counts both replicas' pairs."""
    client = registry(stack)
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    challenger = client.get_model_version_by_alias(MODEL, "challenger").version
    assert champion != challenger
    wait_until_served(replicas, champion)
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while shadow_versions(replicas) != [challenger, challenger]:
        if time.monotonic() > deadline:
            pytest.fail(f"replicas shadow {shadow_versions(replicas)}, expected v{challenger} on both")
        time.sleep(1)
    before = [shadow_pairs_written(url) for url in replicas]
    # A cached answer ran no model, so it has no features to mirror: count what each replica inferred.
    inferred = [0, 0]
    images = sorted((tiny_dataset / "images").iterdir())[70:78]
    for i, path in enumerate(images):
        response = httpx.post(
            f"{replicas[i % 2]}/api/vehicle/classify",
            files={"file": (path.name, path.read_bytes())},
            headers={**FLEET, "X-Region": SHADOW_REGION},
            timeout=30,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"]["version"] == champion  # the client's answer is the champion's
        inferred[i % 2] += not response.json()["cached"]
    assert all(inferred), inferred
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while [after - start for after, start in zip(map(shadow_pairs_written, replicas), before)] != inferred:
        if time.monotonic() > deadline:
            pytest.fail(f"pairs written: {[shadow_pairs_written(url) for url in replicas]}, before: {before}")
        time.sleep(0.5)

    shown = stack.sandbox.run(
        [stack.sandbox.command("vehicles"), "shadow", "--json"],
        env={**stack.env, "REDIS_URL": stack.redis_url, "REDIS_KEY_PREFIX": "stack"},
        timeout=120,
    )
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-2000:]
    report = json.loads(shown.stdout)
    assert (report["champion"], report["challenger"], report["pairs"]) == (champion, challenger, sum(inferred))
    assert set(report["agreement"]) == set(ATTRIBUTES)

    trigger(stack, {}, deployment=SHADOW)
    experiment = client.get_experiment_by_name("vehicle-monitoring")
    [run] = client.search_runs([experiment.experiment_id], "tags.kind = 'shadow'", max_results=1)
    assert run.data.metrics["shadow.pairs"] == sum(inferred)
    assert (run.data.tags["champion"], run.data.tags["challenger"]) == (champion, challenger)
    assert client.get_model_version_by_alias(MODEL, "champion").version == champion  # auto-promotion is off


def rendered(url: str, profile: Path) -> str:
    """The DOM of ``url`` after headless Chromium ran its scripts (the single-page UIs render client-side)."""
    result = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_uis_the_readme_points_to_render(stack: Stack, replicas: list[str], first_run: UUID, tmp_path: Path):
    client = registry(stack)
    experiment = client.get_experiment_by_name("vehicle-classification")
    # MLflow 3.17's UI picks GenAI or model-training views from its workspace switch (default
    # GenAI), not from the experiment tag: the README's links select model training.
    runs_page = rendered(
        f"{stack.mlflow_uri}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning",
        tmp_path / "mlflow",
    )
    [parent] = client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{first_run}'")
    assert "Runs" in runs_page and parent.info.run_name in runs_page, runs_page[-3000:]
    model_page = rendered(f"{stack.mlflow_uri}/#/models/{MODEL}", tmp_path / "model")
    assert "champion" in model_page, model_page[-3000:]
    deployments = rendered(stack.prefect_api.removesuffix("/api") + "/deployments", tmp_path / "prefect")
    assert "retrain-nightly" in deployments, deployments[-3000:]
    home = rendered(replicas[0] + "/", tmp_path / "serving")
    assert "<h1>Vehicle classifier" in home, home[-3000:]
    # /docs (Swagger UI) is left out: its script comes from a CDN, unreachable on these machines.


@dataclass(frozen=True)
class LoopAnswer:
    """One image classified through the proxy for the learning loop.

    Attributes:
        request_id: the answer's id, which feedback and the review queue name it by.
        image: the uploaded bytes.
        truth: the image's labels in the tiny set.
        predicted: the labels the answer gave.
    """

    request_id: str
    image: bytes
    truth: dict[str, str]
    predicted: dict[str, str]


@pytest.fixture(scope="module")
def proxy(stack: Stack, replicas: list[str]) -> tuple[str, Path]:
    """nginx with the stack's proxy rules in front of both replicas: its URL and access log."""
    return start_proxy(stack.sandbox, [url.removeprefix("http://") for url in replicas])


@pytest.fixture(scope="module")
def loop_answers(
    stack: Stack, proxy: tuple[str, Path], replicas: list[str], first_run: UUID, tiny_dataset: Path
) -> list[LoopAnswer]:
    """Images none of the earlier tests sent (so no cached answer) classified through the proxy."""
    wait_until_served(replicas, registry(stack).get_model_version_by_alias(MODEL, "champion").version)
    rows = pd.read_csv(tiny_dataset / "labels.csv").iloc[SEEDED : SEEDED + LOOP_IMAGES]
    answers = []
    for row in rows.to_dict("records"):
        image = (tiny_dataset / row["image"]).read_bytes()
        response = httpx.post(
            f"{proxy[0]}/api/vehicle/classify",
            files={"file": (Path(row["image"]).name, image)},
            headers={**FLEET, "X-Region": LOOP_REGION},
            timeout=30,
            trust_env=False,
        )
        assert response.status_code == 200 and not response.json()["cached"], response.text
        body = response.json()
        predicted = {attribute: body["predictions"][attribute]["label"] for attribute in ATTRIBUTES}
        answers.append(LoopAnswer(body["request_id"], image, {a: row[a] for a in ATTRIBUTES}, predicted))
    return answers


def give_feedback(proxy_url: str, answer: LoopAnswer, client: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{proxy_url}/api/vehicle/feedback",
        json={"request_id": answer.request_id, "labels": answer.truth},
        headers=client,
        timeout=30,
        trust_env=False,
    )


@pytest.fixture(scope="module")
def feedback_given(proxy: tuple[str, Path], loop_answers: list[LoopAnswer]) -> list[httpx.Response]:
    """The client's true labels for the first half of its answers, through the proxy."""
    return [give_feedback(proxy[0], answer, FLEET) for answer in loop_answers[: LOOP_IMAGES // 2]]


@pytest.fixture(scope="module")
def reviews_given(
    proxy: tuple[str, Path], loop_answers: list[LoopAnswer], feedback_given: list[httpx.Response]
) -> tuple[httpx.Response, list[httpx.Response]]:
    """The operator's queue of the loop's region, then its reviews of the rest: the first
    confirmed (the model's guess becomes the label), the others corrected to the truth."""
    unlabelled = loop_answers[LOOP_IMAGES // 2 :]
    queue = wait_for_queue(proxy[0], {answer.request_id for answer in unlabelled})
    reviews = []
    for index, answer in enumerate(unlabelled):
        action = {"action": "confirm"} if index == 0 else {"action": "correct", "labels": answer.truth}
        reviews.append(
            httpx.post(
                f"{proxy[0]}/api/labels/{answer.request_id}", json=action, headers=OPERATOR, timeout=30, trust_env=False
            )
        )
    return queue, reviews


def wait_for_queue(proxy_url: str, item_ids: set[str]) -> httpx.Response:
    """The loop region's review queue once it lists ``item_ids`` (a replica writes its kept
    items after answering, off the request path), or as it is when that does not happen."""
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while True:
        queue = httpx.get(
            f"{proxy_url}/api/labels/queue",
            params={"region": LOOP_REGION, "limit": 50},
            headers=OPERATOR,
            timeout=30,
            trust_env=False,
        )
        listed = {item["item_id"] for item in queue.json()["items"]} if queue.status_code == 200 else set()
        if queue.status_code != 200 or listed >= item_ids or time.monotonic() > deadline:
            return queue
        time.sleep(0.5)


def feedback_block(url: str) -> dict | None:
    """The online accuracy block of the loop's region in one replica's stats."""
    stats = httpx.get(f"{url}/api/stats/regions/{LOOP_REGION}", headers=OPERATOR, timeout=10, trust_env=False)
    return stats.json()["feedback"]


def wait_for_labelled(replicas: list[str], labelled: int) -> list[dict]:
    """Each replica's online accuracy block of the loop's region, once it counts ``labelled`` labels."""
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while True:
        blocks = [feedback_block(url) for url in replicas]
        if all(block is not None and block["labelled"] == labelled for block in blocks):
            return blocks
        if time.monotonic() > deadline:
            pytest.fail(f"expected {labelled} labels counted on both replicas; their feedback blocks: {blocks}")
        time.sleep(0.5)


def test_feedback_through_the_proxy_is_counted_on_both_replicas(
    proxy: tuple[str, Path], replicas: list[str], loop_answers: list[LoopAnswer], feedback_given: list[httpx.Response]
):
    stored = [(r.status_code, r.json()["status"], r.json()["kept_image"], r.json()["trains"]) for r in feedback_given]
    assert stored == [(200, "created", True, True)] * len(feedback_given), [r.text for r in feedback_given]
    again, foreign = give_feedback(proxy[0], loop_answers[0], FLEET), give_feedback(proxy[0], loop_answers[0], OTHER)
    assert (again.status_code, again.json()["status"]) == (200, "unchanged"), again.text
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "prediction_not_found"), foreign.text

    for block in wait_for_labelled(replicas, len(feedback_given)):
        assert set(block["accuracy"]) == set(ATTRIBUTES)
    # Round robin: both replicas answered classify and feedback requests through the proxy.
    answered_by = {line.split()[-1] for line in proxy[1].read_text().splitlines() if "/api/vehicle/" in line}
    assert answered_by == {url.removeprefix("http://") for url in replicas}


def test_kept_images_are_reviewed_through_the_proxy(
    proxy: tuple[str, Path],
    replicas: list[str],
    loop_answers: list[LoopAnswer],
    reviews_given: tuple[httpx.Response, list[httpx.Response]],
):
    queue, reviews = reviews_given
    unlabelled = {answer.request_id: answer for answer in loop_answers[LOOP_IMAGES // 2 :]}
    assert queue.status_code == 200, queue.text
    items = queue.json()["items"]
    assert {item["item_id"] for item in items} == set(unlabelled)
    for item in items:
        answer = unlabelled[item["item_id"]]
        assert {a: item["predictions"][a]["label"] for a in ATTRIBUTES} == answer.predicted
        assert "uniform" in item["reasons"]  # every answer is in the uniform sample here
        for url in replicas:  # one folder of kept images behind both replicas
            image = httpx.get(f"{url}{item['image']}", headers=OPERATOR, timeout=10, trust_env=False)
            assert image.status_code == 200 and image.content == answer.image
    assert [(r.status_code, r.json()["status"]) for r in reviews] == [(200, "created")] * len(reviews), [
        r.text for r in reviews
    ]
    after = httpx.get(
        f"{proxy[0]}/api/labels/queue", params={"region": LOOP_REGION}, headers=OPERATOR, timeout=30, trust_env=False
    ).json()
    assert (after["items"], after["queued"]) == ([], 0)
    # Reviews of the uniform sample count towards online accuracy, as the feedback does.
    wait_for_labelled(replicas, LOOP_IMAGES)


def test_harvest_on_the_worker_adds_the_labels_to_its_training_data(
    stack: Stack, worker: None, loop_answers: list[LoopAnswer], reviews_given: tuple[httpx.Response, list]
):
    trigger(stack, {}, HARVEST)  # the daily deployment as scheduled: no parameters

    [batch] = [p for p in training_root(stack).iterdir() if p.name.endswith("reviewed-labels")]
    with (batch / "labels.csv").open(newline="") as manifest:
        harvested = {Path(row["image"]).stem: {a: row[a] for a in ATTRIBUTES} for row in csv.DictReader(manifest)}
    confirmed = loop_answers[LOOP_IMAGES // 2]
    assert harvested == {
        digest(answer.image): answer.predicted if answer is confirmed else answer.truth for answer in loop_answers
    }
    status = stack.sandbox.run(
        [stack.sandbox.command("vehicles"), "labels", "status", "--json"], env=stack.env, timeout=120
    )
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-3000:]
    region = json.loads(status.stdout.strip().splitlines()[-1])["regions"][LOOP_REGION]
    assert (region["labelled"], region["harvested"], region["harvestable"], region["queued"]) == (
        LOOP_IMAGES,
        LOOP_IMAGES,
        0,
        0,
    )
