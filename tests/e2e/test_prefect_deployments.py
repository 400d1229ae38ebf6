"""The deployments on a real Prefect server: registered, scheduled, and run by a process worker.

The module starts its own ``prefect server start``, not the session's server: it deletes
deployments, and its schedules and drift automation would start flow runs other tests do not expect.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import pytest
from e2e_support import MODEL, QUICK_CANDIDATES, REPO, Sandbox, free_port, tail, wait_for_http
from mlflow import MlflowClient
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import State
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

pytestmark = pytest.mark.e2e

POOL = "vehicles-process"
TRAIN, NIGHTLY = "train-pipeline/train", "train-pipeline/retrain-nightly"
ENTRYPOINT = "flows/training.py:train_pipeline"
FLOW_PARAMETERS = {
    "data",
    "candidates",
    "metric",
    "min_improvement",
    "seed",
    "time_budget_seconds",
    "augment_copies",
    "force",
    "trigger",
    "drift_regions",
    "vote",
}
MONITOR = "monitor-drift/monitor-drift-hourly"
RUN_TIMEOUT = 240


@contextmanager
def prefect(api_url: str) -> Iterator[SyncPrefectClient]:
    """A client of the test's server (whatever this process's own Prefect settings say)."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="module")
def api_url(sandbox: Sandbox) -> Iterator[str]:
    port = free_port()
    process, log = sandbox.start(
        [sandbox.command("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={"PREFECT_API_URL": None},
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", process, log, timeout=180)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        sandbox.stop(process)


@pytest.fixture(scope="module")
def deployed(sandbox: Sandbox, api_url: str) -> subprocess.CompletedProcess[str]:
    return sandbox.run([sandbox.command("vehicles"), "deploy"], env={"PREFECT_API_URL": api_url}, timeout=180)


def _assert_both_deployments(client: SyncPrefectClient) -> None:
    train, nightly = client.read_deployment_by_name(TRAIN), client.read_deployment_by_name(NIGHTLY)
    assert train.schedules == []
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)
    assert not nightly.paused
    assert nightly.parameters == {"trigger": "schedule"}, "no data: the worker's PIPELINE_TRAINING_DATA decides"
    for deployment in (train, nightly):
        assert (deployment.work_pool_name, deployment.entrypoint) == (POOL, ENTRYPOINT)
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert set(deployment.parameter_openapi_schema["properties"]) == FLOW_PARAMETERS


def test_vehicles_deploy_registers_pool_and_both_deployments(deployed: subprocess.CompletedProcess[str], api_url: str):
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    with prefect(api_url) as client:
        assert client.read_work_pool(POOL).type == "process"
        _assert_both_deployments(client)
        _assert_monitoring(client)


def _wait_for_final_state(
    client: SyncPrefectClient, flow_run_id: UUID, worker: subprocess.Popen, log: Path, timeout: float
) -> State:
    """The flow run's final state; fails early if the worker exits and the run stays unfinished."""
    deadline, worker_gone = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = client.read_flow_run(flow_run_id).state
        if state is not None and state.is_final():
            return state
        if worker.poll() is not None:
            worker_gone = worker_gone or time.monotonic()
            if time.monotonic() - worker_gone > 15:
                pytest.fail(f"worker exited ({worker.returncode}) with the flow run {state}:\n{tail(log)}")
        time.sleep(2)
    pytest.fail(f"flow run not finished within {timeout} s (state {state}):\n{tail(log)}")


def test_train_deployment_runs_on_a_process_worker(
    deployed: subprocess.CompletedProcess[str], api_url: str, sandbox: Sandbox, tiny_dataset: Path
):
    assert deployed.returncode == 0
    parameters = {
        "data": str(tiny_dataset),
        "candidates": list(QUICK_CANDIDATES),
        "time_budget_seconds": 2,
        "augment_copies": 0,
    }
    with temporary_settings({PREFECT_API_URL: api_url}):
        flow_run = run_deployment(name=TRAIN, parameters=parameters, timeout=0)

    # --limit 1: should a nightly run fall due meanwhile, the worker still takes only this one (scheduled earlier).
    worker, log = sandbox.start(
        [sandbox.command("prefect"), "worker", "start", "--pool", POOL, "--run-once", "--limit", "1"],
        cwd=REPO,
        env={"PREFECT_API_URL": api_url},
    )
    try:
        with prefect(api_url) as client:
            state = _wait_for_final_state(client, flow_run.id, worker, log, RUN_TIMEOUT)
    finally:
        sandbox.stop(worker)
    assert state.is_completed(), f"{state}\n{tail(log)}"

    registry = MlflowClient(tracking_uri=sandbox.tracking_uri, registry_uri=sandbox.tracking_uri)
    champion = registry.get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["flow_run_id"] == str(flow_run.id)
    assert champion.tags["candidate"] in parameters["candidates"]


def _assert_monitoring(client: SyncPrefectClient) -> None:
    """The hourly drift check, and the automation that retrains the nightly deployment on drift."""
    monitor = client.read_deployment_by_name(MONITOR)
    [schedule] = monitor.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 * * * *", "UTC", True)
    assert {"window_minutes", "min_records", "p_value"} <= set(monitor.parameter_openapi_schema["properties"])
    nightly = client.read_deployment_by_name(NIGHTLY).id
    [automation] = [
        a
        for a in client.read_automations_by_name("retrain-on-drift")
        if [x.deployment_id for x in a.actions] == [nightly]
    ]
    assert automation.enabled and automation.trigger.expect == {"vehicle.drift.detected"}


def _runs_of(client: SyncPrefectClient, deployment_id: UUID) -> list:
    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_drift_event_starts_a_run_of_the_retrain_deployment(
    deployed: subprocess.CompletedProcess[str], api_url: str, sandbox: Sandbox
):
    assert deployed.returncode == 0
    with prefect(api_url) as client:
        _assert_monitoring(client)
        nightly = client.read_deployment_by_name(NIGHTLY).id
        before = {run.id for run in _runs_of(client, nightly)}

    emitted = sandbox.run(
        [
            sandbox.command("prefect"),
            "event",
            "emit",
            "vehicle.drift.detected",
            "--resource-id",
            f"vehicle.monitoring.{MODEL}",
            "--payload",
            json.dumps({"regions": ["north"], "version": "1"}),
        ],
        env={"PREFECT_API_URL": api_url},
        timeout=60,
    )
    assert emitted.returncode == 0, emitted.stdout[-3000:] + emitted.stderr[-3000:]

    deadline, started = time.monotonic() + 90, []
    with prefect(api_url) as client:
        while not started and time.monotonic() < deadline:
            # The scheduler service fills in the nightly schedule's runs (every 60 s): not the automation's.
            runs = _runs_of(client, nightly)
            started = [run for run in runs if run.id not in before and not run.auto_scheduled]
            time.sleep(1)
        assert started, "the automation created no flow run of the retrain deployment"
        [run] = started
        assert run.parameters == {"trigger": "drift", "drift_regions": ["north"]}
        client.delete_flow_run(run.id)  # nothing else in this module should pick it up


def test_prefect_yaml_deploys_both_deployments(sandbox: Sandbox, api_url: str):
    with prefect(api_url) as client:
        for deployment in client.read_deployments():
            client.delete_deployment(deployment.id)
        assert client.read_deployments() == []
    env = {"PREFECT_API_URL": api_url, "VEHICLES_PROJECT_DIR": str(REPO)}
    prefect_cli = sandbox.command("prefect")
    # prefect.yaml names the pool but `prefect deploy` does not create it.
    pool = sandbox.run(
        [prefect_cli, "work-pool", "create", POOL, "--type", "process", "--overwrite"], env=env, timeout=60
    )
    assert pool.returncode == 0, pool.stdout[-3000:] + pool.stderr[-3000:]

    result = sandbox.run([prefect_cli, "--no-prompt", "deploy", "--all"], cwd=REPO, env=env, timeout=180)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with prefect(api_url) as client:
        _assert_both_deployments(client)
        _assert_monitoring(client)
