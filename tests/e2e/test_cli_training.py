"""The ``vehicles`` CLI as a user runs it, with no servers: train, gate, promote, roll back, predict.

The tests of this module run in file order on one sandbox: each step starts from the
registry the previous one left.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from e2e_support import MODEL, Sandbox
from mlflow import MlflowClient

from tasks.training.candidates import CANDIDATES

pytestmark = pytest.mark.e2e

TRAIN_TIMEOUT = 300
COMMAND_TIMEOUT = 120
LEADERBOARD_ROW = re.compile(r"^\W*(\d+)\W+(\w+)\W+\d+\.\d+", re.MULTILINE)


def _vehicles(sandbox: Sandbox, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return sandbox.run([sandbox.command("vehicles"), *args], timeout=timeout)


def _decision(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("Decision:")]
    return line


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(MODEL).aliases.items()}


def _json_lines(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def client(sandbox: Sandbox) -> MlflowClient:
    return MlflowClient(tracking_uri=sandbox.tracking_uri, registry_uri=sandbox.tracking_uri)


@pytest.fixture(scope="module")
def first_training(sandbox: Sandbox, tiny_dataset: Path) -> subprocess.CompletedProcess[str]:
    """All six candidates on the default process-pool runner and Prefect's temporary local API."""
    return _vehicles(sandbox, "train", "--data", str(tiny_dataset), "--time-budget", "5", timeout=TRAIN_TIMEOUT)


@pytest.fixture(scope="module")
def knn_training(
    sandbox: Sandbox, tiny_dataset: Path, first_training: subprocess.CompletedProcess[str]
) -> subprocess.CompletedProcess[str]:
    assert first_training.returncode == 0, first_training.stderr[-4000:]
    # --force: the data has not changed since the champion, so without it nothing would be trained.
    return _vehicles(
        sandbox,
        "train",
        "--data",
        str(tiny_dataset),
        "-c",
        "knn",
        "--time-budget",
        "5",
        "--force",
        timeout=TRAIN_TIMEOUT,
    )


def test_train_ranks_six_candidates_and_promotes_the_winner(
    first_training: subprocess.CompletedProcess[str], client: MlflowClient, sandbox: Sandbox
):
    assert first_training.returncode == 0, first_training.stderr[-4000:]
    rows = LEADERBOARD_ROW.findall(first_training.stdout)
    assert [rank for rank, _ in rows] == [str(i) for i in range(1, len(CANDIDATES) + 1)], first_training.stdout
    assert sorted(name for _, name in rows) == sorted(CANDIDATES)
    assert f"Winner {rows[0][1]} registered as version 1" in first_training.stdout
    assert "promoted to champion" in _decision(first_training.stdout)

    version = client.get_model_version(MODEL, "1")
    parent = client.get_run(version.run_id)
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(run.data.tags["candidate"] for run in children) == sorted(CANDIDATES)
    assert {run.info.status for run in children} == {"FINISHED"}
    assert version.tags["candidate"] == rows[0][1]
    assert _aliases(client) == {"champion": "1"}

    logs = sandbox.root / "logs"
    trained = [e for e in _json_lines(logs / "training.log") if e["message"] == "candidate trained"]
    assert sorted(e["candidate"] for e in trained[: len(CANDIDATES)]) == sorted(CANDIDATES)
    decision = next(e for e in _json_lines(logs / "evaluation.log") if e["message"] == "decision")
    assert (decision["version"], decision["promoted"], decision["winner"]) == ("1", True, rows[0][1])


def test_weaker_model_becomes_challenger(knn_training: subprocess.CompletedProcess[str], client: MlflowClient):
    assert knn_training.returncode == 0, knn_training.stderr[-4000:]
    assert "Winner knn registered as version 2" in knn_training.stdout
    assert "challenger" in _decision(knn_training.stdout)
    assert _aliases(client) == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(MODEL, "2").tags["promotion.decision"] == "rejected"


def test_promote_and_rollback_move_the_aliases(
    knn_training: subprocess.CompletedProcess[str], sandbox: Sandbox, client: MlflowClient
):
    assert knn_training.returncode == 0

    promoted = _vehicles(sandbox, "promote", "--version", "2")
    assert promoted.returncode == 0, promoted.stderr[-4000:]
    assert "champion is now v2 (previous: v1)" in promoted.stdout
    assert _aliases(client) == {"champion": "2", "previous": "1"}

    # Each move takes the registry lock, which starts Prefect's temporary API: one rollback is enough here.
    rolled = _vehicles(sandbox, "rollback")
    assert rolled.returncode == 0, rolled.stderr[-4000:]
    assert "champion is now v1 (previous: v2)" in rolled.stdout
    assert _aliases(client) == {"champion": "1", "previous": "2"}

    unknown = _vehicles(sandbox, "promote", "--version", "99")
    assert unknown.returncode == 1
    assert "Cannot promote" in unknown.stdout and "99" in unknown.stdout and "not found" in unknown.stdout
    assert "Traceback" not in unknown.stdout + unknown.stderr
    assert _aliases(client) == {"champion": "1", "previous": "2"}


def test_predict_prints_labels_and_rejects_a_non_image(
    first_training: subprocess.CompletedProcess[str], sandbox: Sandbox, tiny_dataset: Path
):
    assert first_training.returncode == 0
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    images = [tiny_dataset / frame["image"][0], tiny_dataset / frame["image"][1]]

    predicted = _vehicles(sandbox, "predict", *map(str, images))
    assert predicted.returncode == 0, predicted.stderr[-4000:]
    lines = predicted.stdout.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [str(image) for image in images]
    for line in lines:
        labels = json.loads(line.split(": ", 1)[1])
        assert labels["vehicle_type"] in set(frame["vehicle_type"])
        assert labels["color"] in set(frame["color"])
        assert set(labels) == {"vehicle_type", "color"}

    text = sandbox.root / "notes.txt"
    text.write_text("not an image\n")
    rejected = _vehicles(sandbox, "predict", str(text))
    assert rejected.returncode == 1
    assert str(text) in rejected.stdout and "accepted formats" in rejected.stdout
    assert "Traceback" not in rejected.stdout + rejected.stderr
