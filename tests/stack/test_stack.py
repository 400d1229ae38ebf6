"""The whole stack through its APIs: deployments, a worker, training, two serving replicas.

Story (one module, in order): register the deployments; start a worker and two replicas
sharing Redis; trigger ``train`` with parameters; see six child runs and a champion; both
replicas pick it up without restart; reports and regional stats are shared; a forced second
version is promoted and followed; a gated third version is rejected; a rollback is followed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from conftest import Stack
from e2e_support import MODEL, REPO, free_port, tail
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.training.candidates import CANDIDATES

pytestmark = pytest.mark.stack

TRAIN = "train-pipeline/train"
NIGHTLY = "train-pipeline/retrain-nightly"
POOL = "vehicles-process"
RUN_TIMEOUT = 600
FOLLOW_TIMEOUT = 90


def trigger(stack: Stack, parameters: dict) -> UUID:
    """Starts a ``train`` run through the Prefect API and waits for it to complete."""
    with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
        flow_run = run_deployment(name=TRAIN, parameters=parameters, timeout=0)
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


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[None]:
    deploy = stack.sandbox.run([stack.sandbox.command("vehicles"), "deploy"], env=stack.env, timeout=240)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    process, log = stack.sandbox.start(
        [stack.sandbox.command("prefect"), "worker", "start", "--pool", POOL],
        cwd=REPO,
        # The tiny test split is too small for the default gate; these let a forced run promote.
        env={**stack.env, "PIPELINE_GATE_MIN_IMAGES": "1", "PIPELINE_GATE_MIN_LOWER_BOUND": "-2"},
    )
    yield
    stack.sandbox.stop(process)


@pytest.fixture(scope="module")
def replicas(stack: Stack) -> list[str]:
    """Two ``vehicles serve`` processes on one Redis prefix, polling the alias every second."""
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


def test_triggered_run_trains_six_children_and_a_champion(stack: Stack, first_run: UUID):
    client = registry(stack)
    experiment = client.get_experiment_by_name("vehicle-classification")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    [parent] = client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{first_run}'")
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.data.tags["candidate"] for run in children) == sorted(CANDIDATES)
    assert len(CANDIDATES) == 6
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert (champion.version, champion.tags["flow_run_id"]) == ("1", str(first_run))


def test_both_replicas_pick_up_the_champion_and_classify(replicas: list[str], first_run: UUID, tiny_dataset: Path):
    wait_until_served(replicas, "1")
    image = next((tiny_dataset / "images").iterdir()).read_bytes()
    for url in replicas:
        response = httpx.post(
            f"{url}/api/vehicle/classify", files={"file": ("car.png", image)}, timeout=30, trust_env=False
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
        timeout=30,
        trust_env=False,
    )
    assert created.status_code == 201, created.text
    read = httpx.get(f"{replicas[1]}/api/vehicle/report/stack-1", timeout=10, trust_env=False)
    assert read.status_code == 200 and read.json() == created.json()


def test_regional_stats_add_up_across_replicas(replicas: list[str], first_run: UUID, tiny_dataset: Path):
    wait_until_served(replicas, "1")
    images = sorted((tiny_dataset / "images").iterdir())[2:8]
    for i, path in enumerate(images):
        url = replicas[i % 2]
        response = httpx.post(
            f"{url}/api/vehicle/classify",
            files={"file": (path.name, path.read_bytes())},
            headers={"X-Region": "stack-north"},
            timeout=30,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
    for url in replicas:
        body = httpx.get(f"{url}/api/stats/regions/stack-north", timeout=10, trust_env=False).json()
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
