"""The training flow under faults: a tracking store that blinks, a run killed mid-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from flow_support import BUDGET, MODEL, heads_folders, train
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from prefect.settings import PREFECT_API_URL

import tasks.registry.versions
from tasks.registry.versions import CHAMPION, version_for_alias

pytestmark = pytest.mark.flows

REPO = Path(__file__).resolve().parents[2]
# A training run whose candidate trains until the process is killed: the kill lands while
# candidates are training however loaded the machine is.
RUN_UNTIL_KILLED = """
import threading

from flows.training import train_pipeline
from tasks.training import train_steps


def fit_until_killed(*args, **kwargs):
    threading.Event().wait()


assert hasattr(train_steps, "fit_candidate"), "patch what train_candidate_task calls, or the kill races again"
train_steps.fit_candidate = fit_until_killed
train_pipeline(data={data!r}, candidates=["logistic_regression"], time_budget_seconds={budget!r}, augment_copies=0)
"""


def _fails_once(monkeypatch: pytest.MonkeyPatch, owner, name: str) -> list[str]:
    """Makes ``owner.name`` raise a transient MLflow error on its first call only."""
    real, calls = getattr(owner, name), []

    def flaky(*args, **kwargs):
        calls.append(name)
        if len(calls) == 1:
            raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return calls


def test_transient_tracking_errors_are_retried(pipeline_env, tiny_dataset, monkeypatch):
    leaderboard = _fails_once(monkeypatch, mlflow, "log_table")
    registration = _fails_once(monkeypatch, tasks.registry.versions.mlflow, "register_model")

    summary = train(tiny_dataset, candidates=["logistic_regression"])

    assert len(leaderboard) == 2 and len(registration) == 2, "each failed once, then succeeded on retry"
    client = MlflowClient()
    [version] = client.search_model_versions(f"name = '{MODEL}'")
    assert str(version.version) == summary.version == "1"
    assert version.tags["promotion.decision"] == "promoted"
    assert str(version_for_alias(client, MODEL, CHAMPION).version) == "1"
    assert "leaderboard.json" in {a.path for a in client.list_artifacts(summary.parent_run_id)}
    assert heads_folders(pipeline_env / "prepared") == [], "fitted heads are removed after the run"


def _cache_files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _candidate_started() -> bool:
    return not mlflow.search_runs(search_all_experiments=True, filter_string="tags.stage = 'candidate'").empty


def test_killed_run_leaves_no_half_registered_version_and_rerun_reuses_features(
    pipeline_env, tiny_dataset, monkeypatch
):
    """SIGKILL a real flow process while its candidate trains, then run again."""
    cache = pipeline_env / "features-own"  # this test's own cache: the killed run must fill it
    monkeypatch.setenv("PIPELINE_FEATURE_CACHE_DIR", str(cache))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    log = pipeline_env / "killed-run.log"  # a file, not a pipe: a full pipe would stall the run
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_UNTIL_KILLED.format(data=str(tiny_dataset), budget=BUDGET)],
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    client = MlflowClient()
    deadline = time.monotonic() + 240
    try:
        while not _candidate_started():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no candidate started within 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    cached = _cache_files(cache)
    assert cached, "the killed run featurized before training"
    assert client.search_model_versions(f"name = '{MODEL}'") == [], "killed before registering: nothing registered"

    summary = train(tiny_dataset, candidates=["logistic_regression"])

    assert _cache_files(cache) == cached, "the killed run had featurized every image; none is featurized again"
    assert summary.promoted and summary.version == "1"
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert {v.tags["promotion.decision"] for v in versions} == {"promoted"}
    assert {k: str(v) for k, v in client.get_registered_model(MODEL).aliases.items()} == {CHAMPION: "1"}
