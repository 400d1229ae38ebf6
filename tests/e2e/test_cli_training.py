"""The ``vehicles`` CLI as a user runs it: train, gate, promote, roll back, predict.

The first test checks the session's ``vehicles train`` (``trained`` in conftest.py: the
process-pool runner on Prefect's temporary local server). The others run in file order on a
copy of its store, with the session's Prefect server: each step starts from the registry the
previous one left.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
from e2e_support import MODEL, QUICK_CANDIDATES, QUICK_TRAINING, TEMPORARY_SERVER, Sandbox, TrainedStore
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

pytestmark = pytest.mark.e2e

TRAIN_TIMEOUT = 300
COMMAND_TIMEOUT = 120
LEADERBOARD_ROW = re.compile(r"^\W*(\d+)\W+(\w+)\W+\d+\.\d+", re.MULTILINE)


def _vehicles(
    sandbox: Sandbox, *args: str, timeout: float = COMMAND_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = sandbox.run([sandbox.command("vehicles"), *args], timeout=timeout, env=env)
    assert TEMPORARY_SERVER not in result.stderr, "the command should use the session's Prefect server"
    return result


def _leaderboard(stdout: str) -> list[tuple[str, str]]:
    """(rank, candidate) rows of the leaderboard table, which ends where the winner line starts."""
    table = stdout[stdout.index("Leaderboard") : stdout.index("Winner ")]
    return LEADERBOARD_ROW.findall(table)


def _decision(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("Decision:")]
    return line


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(MODEL).aliases.items()}


def _json_lines(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    return [json.loads(line) for line in lines]


def _client(sandbox: Sandbox) -> MlflowClient:
    return MlflowClient(tracking_uri=sandbox.tracking_uri, registry_uri=sandbox.tracking_uri)


@pytest.fixture(scope="module")
def client(trained_sandbox: Sandbox) -> MlflowClient:
    return _client(trained_sandbox)


@pytest.fixture(scope="module")
def knn_training(trained_sandbox: Sandbox, tiny_dataset: Path) -> subprocess.CompletedProcess[str]:
    # --force: the data has not changed since the champion, so without it nothing would be trained.
    # Threads: the process pool is the session training's subject.
    return _vehicles(
        trained_sandbox,
        "train",
        "--data",
        str(tiny_dataset),
        "-c",
        "knn",
        *QUICK_TRAINING,
        "--force",
        timeout=TRAIN_TIMEOUT,
        env={"PIPELINE_TASK_RUNNER": "thread"},
    )


def test_train_ranks_the_candidates_and_promotes_the_winner(trained: TrainedStore, prefect_server: str):
    result = trained.result
    # The two candidates asked for, and their vote as a third.
    ranked = sorted([*QUICK_CANDIDATES, "vote"])
    rows = _leaderboard(result.stdout)
    assert [rank for rank, _ in rows] == [str(i) for i in range(1, len(ranked) + 1)], result.stdout
    assert sorted(name for _, name in rows) == ranked
    assert rows[0][1] == trained.winner
    assert f"Winner {trained.winner} registered as version 1" in result.stdout
    assert "promoted to champion" in _decision(result.stdout)

    client = _client(trained.sandbox)
    version = client.get_model_version(MODEL, "1")
    parent = client.get_run(version.run_id)
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(run.data.tags["candidate"] for run in children) == ranked
    assert {run.info.status for run in children} == {"FINISHED"}
    assert version.tags["candidate"] == trained.winner
    assert _aliases(client) == {"champion": "1"}

    # With no PREFECT_API_URL the CLI started Prefect's temporary server: the flow run is not on the session's.
    assert TEMPORARY_SERVER in result.stderr
    with get_client(sync_client=True) as prefect, pytest.raises(ObjectNotFound):
        prefect.read_flow_run(UUID(parent.data.tags["prefect.flow_run_id"]))

    logs = trained.sandbox.root / "logs"
    logged = [e for e in _json_lines(logs / "training.log") if e["message"] == "candidate trained"]
    assert sorted(e["candidate"] for e in logged) == ranked
    decision = next(e for e in _json_lines(logs / "evaluation.log") if e["message"] == "decision")
    assert (decision["version"], decision["promoted"], decision["winner"]) == ("1", True, trained.winner)


def test_weaker_model_becomes_challenger(knn_training: subprocess.CompletedProcess[str], client: MlflowClient):
    assert knn_training.returncode == 0, knn_training.stderr[-4000:]
    assert "Winner knn registered as version 2" in knn_training.stdout
    assert "challenger" in _decision(knn_training.stdout)
    assert _aliases(client) == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(MODEL, "2").tags["promotion.decision"] == "rejected"


def test_promote_and_rollback_move_the_aliases(
    knn_training: subprocess.CompletedProcess[str], trained_sandbox: Sandbox, client: MlflowClient
):
    assert knn_training.returncode == 0

    promoted = _vehicles(trained_sandbox, "promote", "--version", "2")
    assert promoted.returncode == 0, promoted.stderr[-4000:]
    assert "champion is now v2 (previous: v1)" in promoted.stdout
    assert _aliases(client) == {"champion": "2", "previous": "1"}

    rolled = _vehicles(trained_sandbox, "rollback")
    assert rolled.returncode == 0, rolled.stderr[-4000:]
    assert "champion is now v1 (previous: v2)" in rolled.stdout
    assert _aliases(client) == {"champion": "1", "previous": "2"}

    unknown = _vehicles(trained_sandbox, "promote", "--version", "99")
    assert unknown.returncode == 1
    assert "Cannot promote" in unknown.stdout and "99" in unknown.stdout and "not found" in unknown.stdout
    assert "Traceback" not in unknown.stdout + unknown.stderr
    assert _aliases(client) == {"champion": "1", "previous": "2"}


def test_predict_prints_labels_with_decisions_and_rejects_a_non_image(trained_sandbox: Sandbox, tiny_dataset: Path):
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    images = [tiny_dataset / frame["image"][0], tiny_dataset / frame["image"][1]]

    predicted = _vehicles(trained_sandbox, "predict", *map(str, images))
    assert predicted.returncode == 0, predicted.stderr[-4000:]
    lines = predicted.stdout.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [str(image) for image in images]
    for line in lines:
        answers = json.loads(line.split(": ", 1)[1])
        assert answers["vehicle_type"]["label"] in set(frame["vehicle_type"])
        assert answers["color"]["label"] in set(frame["color"])
        assert set(answers) == {"vehicle_type", "color"}
        for answer in answers.values():
            assert answer["decision"] in {"confident", "uncertain", "undetermined"}
            assert ("reason" in answer) == (answer["decision"] != "confident")

    text = trained_sandbox.root / "notes.txt"
    text.write_text("not an image\n")
    rejected = _vehicles(trained_sandbox, "predict", str(text))
    assert rejected.returncode == 1
    assert str(text) in rejected.stdout and "accepted formats" in rejected.stdout
    assert "Traceback" not in rejected.stdout + rejected.stderr
