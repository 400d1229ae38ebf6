"""The built images, run with podman against the host's servers (``--network host``).

The worker image registers the deployments with its own project path and trains a small
run against the host's Prefect API and MLflow server; the serving image then serves that
champion from the host registry with the host's Redis, as a non-root user, healthy.
``make test-images`` builds the images first (scripts/images.sh build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Stack
from e2e_support import MODEL, free_port
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

pytestmark = pytest.mark.images

TAG = os.environ.get("VEHICLES_IMAGE_TAG", "dev")
IMAGES = {target: f"localhost/vehicles-{target}:{TAG}" for target in ("serving", "worker", "mlflow")}
POOL = "vehicles-process"


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def containers() -> Iterator[list[str]]:
    """Names of the containers a test starts; every one is removed at the end."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "5", name)


@pytest.fixture(scope="module")
def shared_dataset(tiny_dataset: Path) -> Iterator[Path]:
    """The tiny dataset in a folder the image's non-root user can read."""
    folder = Path(tempfile.mkdtemp(prefix="vehicles-images-data-"))
    try:
        shutil.copytree(tiny_dataset, folder / "tiny")
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield folder / "tiny"
    finally:
        shutil.rmtree(folder)


def run_container(
    containers: list[str], image: str, *args: str, env: dict[str, str], volumes: tuple[str, ...] = ()
) -> str:
    name = f"vehicles-test-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    options = ["--detach", "--init", "--network", "host", "--name", name]
    options += [f"--env={k}={v}" for k, v in env.items()] + [f"--volume={v}" for v in volumes]
    started = podman("run", *options, image, *args)
    assert started.returncode == 0, started.stderr
    return name


def test_every_image_is_built():
    for image in IMAGES.values():
        assert podman("image", "exists", image).returncode == 0, f"{image} missing: run scripts/images.sh build"


def test_mlflow_image_carries_the_postgres_driver():
    result = podman(
        "run", "--rm", "--init", IMAGES["mlflow"], "python", "-c", "import mlflow, psycopg; print(mlflow.__version__)"
    )
    assert result.returncode == 0 and result.stdout.startswith("3.17"), result.stdout + result.stderr


def test_worker_image_registers_and_trains(stack: Stack, containers: list[str], shared_dataset: Path):
    env = {"PREFECT_API_URL": stack.prefect_api, "MLFLOW_TRACKING_URI": stack.mlflow_uri}
    deploy = podman(
        "run",
        "--rm",
        "--init",
        "--network",
        "host",
        *[f"--env={k}={v}" for k, v in env.items()],
        IMAGES["worker"],
        "vehicles",
        "deploy",
        timeout=300,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    with temporary_settings({PREFECT_API_URL: stack.prefect_api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("train-pipeline/train")
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]
        flow_run = run_deployment(
            name="train-pipeline/train",
            timeout=0,
            parameters={"data": "/data", "candidates": ["logistic_regression", "knn"], "time_budget_seconds": 3},
        )
        worker = run_container(
            containers,
            IMAGES["worker"],
            "prefect",
            "worker",
            "start",
            "--pool",
            POOL,
            env=env,
            volumes=(f"{shared_dataset}:/data:ro",),
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run.id).state
            if state is not None and state.is_final():
                break
            time.sleep(3)
    logs = podman("logs", worker).stdout[-4000:] + podman("logs", worker).stderr[-4000:]
    assert state is not None and state.is_completed(), f"{state}\n{logs}"
    registry = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    assert registry.get_model_version_by_alias(MODEL, "champion").tags["flow_run_id"] == str(flow_run.id)


def test_serving_image_serves_the_champion_as_non_root_and_is_healthy(
    stack: Stack, containers: list[str], shared_dataset: Path
):
    port = free_port()
    name = run_container(
        containers,
        IMAGES["serving"],
        env={
            "MLFLOW_TRACKING_URI": stack.mlflow_uri,
            "REDIS_URL": stack.redis_url,
            "REDIS_KEY_PREFIX": "images",
            "SERVING_PORT": str(port),
        },
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2, trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(1)
    else:
        pytest.fail("serving container never became ready:\n" + podman("logs", name).stderr[-4000:])

    image = sorted((shared_dataset / "images").iterdir())[0].read_bytes()
    classified = httpx.post(
        f"{url}/api/vehicle/classify", files={"file": ("car.png", image)}, timeout=30, trust_env=False
    )
    assert classified.status_code == 200, classified.text
    assert classified.json()["model"]["name"] == MODEL
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    health = podman("healthcheck", "run", name)
    assert health.returncode == 0, health.stdout + health.stderr
