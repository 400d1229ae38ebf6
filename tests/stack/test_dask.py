"""Scale-out on Dask: a scheduler and two workers as separate processes run the flow's
featurization shards and candidate fits; the run ends with the usual champion contract."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Stack
from e2e_support import REPO, free_port, wait_for_http
from mlflow import MlflowClient

from tasks.training.candidates import CANDIDATES

pytestmark = pytest.mark.stack

MODEL = "vehicle-classifier-dask"


@pytest.fixture(scope="module")
def scheduler(stack: Stack) -> Iterator[str]:
    box = stack.sandbox
    port, dashboard = free_port(), free_port()
    process, log = box.start(
        [
            box.command("dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            f"127.0.0.1:{dashboard}",
        ]
    )
    wait_for_http(f"http://127.0.0.1:{dashboard}/health", process, log, timeout=120)
    address = f"tcp://127.0.0.1:{port}"
    workers = [
        box.start(
            [
                box.command("dask"),
                "worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--host",
                "127.0.0.1",
                "--name",
                f"stack-worker-{i}",
                "--no-dashboard",
            ],
            cwd=REPO,
            env=stack.env,
        )
        for i in range(2)
    ]
    from distributed import Client  # the dask extra: make test-e2e installs it, make test does not

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    yield address
    for process, _ in workers:
        box.stop(process)
    box.stop(process)


def executed_keys(address: str) -> dict[str, list[str]]:
    """Per Dask worker name, the keys of the tasks it executed (from the worker's own transition log)."""

    def keys(dask_worker) -> list[str]:
        return sorted({str(entry[0]) for entry in dask_worker.state.log if len(entry) > 2 and entry[2] == "executing"})

    from distributed import Client

    with Client(address, timeout=60) as client:
        by_address = client.run(keys)
        names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
    return {str(names[addr]): found for addr, found in by_address.items()}


def test_shards_and_candidate_fits_run_on_the_dask_workers(stack: Stack, scheduler: str, tiny_dataset: Path):
    box = stack.sandbox
    env = {
        **stack.env,
        "PIPELINE_DASK_ADDRESS": scheduler,
        "MODEL_NAME": MODEL,
        "PIPELINE_SHARD_SIZE": "16",
        "PIPELINE_FEATURE_CACHE_DIR": str(box.root / "dask-features"),
        "PIPELINE_PREPARED_DIR": str(box.root / "dask-prepared"),
    }
    train = box.run(
        [box.command("vehicles"), "train", "--data", str(tiny_dataset), "--time-budget", "3", "--seed", "4"],
        env=env,
        timeout=900,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]

    ran = executed_keys(scheduler)
    every_key = [key for keys in ran.values() for key in keys]
    shards = [key for key in every_key if key.startswith("featurize")]
    fits = [key for key in every_key if key.startswith("train")]
    # 84 images plus the shifted copies of the test split (issue 12), in shards of 16.
    featurized = int(re.search(r"Featurized (\d+) new images", train.stdout + train.stderr).group(1))
    assert featurized > 84 and len(shards) == math.ceil(featurized / 16), (featurized, ran)
    assert len(fits) == len(CANDIDATES), ran
    assert all(ran.values()), f"a worker ran nothing: {ran}"

    registry = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    champion = registry.get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["promotion.decision"] == "promoted"
    image = sorted((tiny_dataset / "images").iterdir())[0]
    predict = box.run([box.command("vehicles"), "predict", str(image)], env=env, timeout=300)
    assert predict.returncode == 0 and '"vehicle_type"' in predict.stdout, predict.stdout + predict.stderr
