"""Continuous training end to end: batches grow a training data root, the nightly flow retrains only
when there is something new, the gate compares fairly, a contract change stays a challenger, and
concurrent alias moves stay consistent.

The session's Prefect test harness (in this process), real MLflow SQLite store, real images;
the ``vehicles`` commands run as processes against the harness's API. The tests of this module
run in file order on one sandbox: each starts from what the previous one left.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from e2e_support import MODEL, QUICK_TRAINING, Sandbox, tail
from litestar.testing import TestClient
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.deploy import load_specs
from flows.ingest import ingest_batch
from flows.training import TrainingSummary, train_pipeline
from tasks.data.dataset import load_dataset
from tasks.data.synthetic import generate_dataset
from tasks.registry.retrain import SkippedRun

pytestmark = pytest.mark.e2e

FAST = ["logistic_regression", "knn"]
QUICK = {"time_budget_seconds": 2, "augment_copies": 0}  # what runs cost, not what they prove
COMMAND_TIMEOUT = 180
TRAINING_IMAGES = "training_images.json"


@pytest.fixture(scope="module")
def root(sandbox: Sandbox) -> Path:
    return sandbox.root / "training-data"


@pytest.fixture(scope="module")
def pipeline(sandbox: Sandbox, root: Path) -> Iterator[dict[str, str]]:
    """This process's settings point at the sandbox's stores; returns the environment for commands.

    Flows in this process use the session's Prefect server (the harness's settings), and so do
    the commands (the sandbox's ``PREFECT_API_URL``).
    """
    settings = {k: v for k, v in sandbox.env.items() if k.startswith(("MLFLOW_", "PIPELINE_"))}
    settings |= {
        "PIPELINE_TASK_RUNNER": "thread",
        "PIPELINE_GATE_MIN_IMAGES": "5",  # the tiny batches give ~20 test images
        "PIPELINE_TRAINING_DATA": str(root),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings.items():
            patch.setenv(key, value)
        mlflow.set_tracking_uri(sandbox.tracking_uri)
        yield settings | {"COLUMNS": "1000"}  # wide enough that rich never folds a cell
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def batch_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """42 new synthetic images (another seed: other content than batch A)."""
    folder = tmp_path_factory.mktemp("batch-b")
    generate_dataset(folder, n=42, seed=11)
    return folder


@pytest.fixture(scope="module")
def registry(sandbox: Sandbox) -> MlflowClient:
    return MlflowClient(tracking_uri=sandbox.tracking_uri, registry_uri=sandbox.tracking_uri)


def _vehicles(sandbox: Sandbox, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return sandbox.run([sandbox.command("vehicles"), *args], env=env, timeout=COMMAND_TIMEOUT)


def _aliases(registry: MlflowClient) -> dict[str, str]:
    return {alias: str(version) for alias, version in registry.get_registered_model(MODEL).aliases.items()}


def _images(registry: MlflowClient, version: str) -> dict[str, list[str]]:
    run_id = registry.get_model_version(MODEL, version).run_id
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{TRAINING_IMAGES}")


def _artifact(key: str) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(artifacts, key=lambda a: a.created)[-1].data


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_v1_trains_on_batch_a(pipeline, root: Path, tiny_dataset: Path, registry: MlflowClient):
    added = ingest_batch(str(tiny_dataset), into=str(root))
    assert added.images == 84 and added.root_images == 84

    v1 = train_pipeline(data=str(root), candidates=FAST, **QUICK)

    assert isinstance(v1, TrainingSummary) and v1.version == "1" and v1.promoted
    assert _aliases(registry) == {"champion": "1"}


def test_a_batch_with_a_planted_problem_is_refused_and_changes_nothing(
    pipeline, sandbox: Sandbox, root: Path, batch_b: Path, tiny_dataset: Path, tmp_path: Path
):
    rows = pd.read_csv(batch_b / "labels.csv")
    rows["image"] = [str(batch_b / p) for p in rows["image"]]
    known = pd.read_csv(tiny_dataset / "labels.csv").iloc[0]
    relabelled = "bus" if known["vehicle_type"] != "bus" else "van"
    planted = str(shutil.copy(tiny_dataset / known["image"], tmp_path / "looks-new.png"))  # batch A's content, new name
    rows.loc[len(rows)] = {"image": planted, "vehicle_type": relabelled, "color": known["color"]}
    bad = tmp_path / "bad-batch"
    bad.mkdir()
    rows.to_csv(bad / "labels.csv", index=False)
    before = _tree(root)

    refused = _vehicles(sandbox, pipeline, "ingest", str(bad), "--into", str(root))

    assert refused.returncode == 1, refused.stdout + refused.stderr[-3000:]
    assert "same_content_same_labels" in refused.stdout and "Batch refused" in refused.stdout
    assert "looks-new.png" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    assert _tree(root) == before


def test_ingest_adds_batch_b(pipeline, sandbox: Sandbox, root: Path, batch_b: Path):
    added = _vehicles(sandbox, pipeline, "ingest", str(batch_b), "--into", str(root))

    assert added.returncode == 0, added.stdout + added.stderr[-3000:]
    assert "Added 42 images" in added.stdout and "now holds 126 images" in added.stdout
    assert len(load_dataset(root).frame) == 126


def _nightly_parameters() -> dict:
    """The parameters the nightly deployment passes (prefect.yaml, as `vehicles deploy` reads them)."""
    return next(spec for spec in load_specs() if spec.name == "retrain-nightly").parameters


def test_nightly_flow_trains_v2_on_a_and_b_and_gates_on_unseen_images(pipeline, root: Path, registry: MlflowClient):
    v2 = train_pipeline(**_nightly_parameters(), candidates=FAST, **QUICK)

    assert isinstance(v2, TrainingSummary) and v2.version == "2"
    tags = registry.get_model_version(MODEL, "2").tags
    assert (tags["dataset.path"], tags["dataset.images"]) == (str(root), "126")
    first, second = _images(registry, "1"), _images(registry, "2")
    assert not set(first["test"]) & (set(second["train"]) | set(second["validation"])), "a v1 test image is trained on"
    assert set(first["test"]) <= set(second["test"]), "splits are stable as the data grows"
    unseen = set(second["test"]) - set(first["train"]) - set(first["validation"])
    assert int(tags["gate.images"]) == len(unseen) > 0
    low, gain, high = float(tags["gate.ci_low"]), float(tags["gate.gain"]), float(tags["gate.ci_high"])
    assert low <= gain <= high
    decision = _artifact("promotion-decision")
    assert f"| {len(unseen)} test images neither trained on |" in decision and "95% interval" in decision


def test_nightly_rerun_without_new_data_trains_nothing(pipeline, sandbox: Sandbox, registry: MlflowClient):
    skipped = train_pipeline(**_nightly_parameters(), candidates=FAST, **QUICK)

    assert isinstance(skipped, SkippedRun)
    assert skipped.line.startswith(f"no new data since {skipped.alias} v2, trained on ")
    artifact = _artifact("training-skipped")
    assert skipped.line in artifact and "started by: schedule" in artifact
    assert len(registry.search_model_versions(f"name='{MODEL}'")) == 2

    cli = _vehicles(sandbox, pipeline, "train", "-c", "logistic_regression", *QUICK_TRAINING)
    assert cli.returncode == 0, cli.stdout + cli.stderr[-3000:]
    assert skipped.line in cli.stdout
    assert len(registry.search_model_versions(f"name='{MODEL}'")) == 2


@pytest.fixture(scope="module")
def other_attributes(tmp_path_factory: pytest.TempPathFactory, batch_b: Path, tiny_dataset: Path) -> Path:
    """An ImageFolder of the same images with one attribute, ``label``: another response contract."""
    folder = tmp_path_factory.mktemp("image-folder")
    for source in (tiny_dataset, batch_b):
        for row in pd.read_csv(source / "labels.csv").itertuples():
            (folder / row.vehicle_type).mkdir(exist_ok=True)
            shutil.copy(source / row.image, folder / row.vehicle_type / f"{source.name}-{Path(row.image).name}")
    return folder


def test_other_attributes_end_as_challenger_and_serving_keeps_its_shape(
    pipeline, other_attributes: Path, registry: MlflowClient, sandbox: Sandbox, batch_b: Path
):
    from serving.app import create_app
    from serving.settings import ServingSettings

    champion = _aliases(registry)["champion"]

    other = train_pipeline(data=str(other_attributes), candidates=["logistic_regression"], **QUICK)

    assert isinstance(other, TrainingSummary) and not other.promoted
    assert "contract change" in other.reason and "attribute 'color' is no longer predicted" in other.reason
    assert _aliases(registry)["champion"] == champion and _aliases(registry)["challenger"] == other.version
    settings = ServingSettings(
        mlflow_tracking_uri=sandbox.tracking_uri,
        redis_url=None,
        log_dir=sandbox.root / "serving-logs",
        rate_limit_per_minute=0,
        api_key=None,
        cors_origins=[],
    )
    image = (batch_b / pd.read_csv(batch_b / "labels.csv")["image"][0]).read_bytes()
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/vehicle/classify", files={"file": ("car.png", image, "application/octet-stream")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == champion
    assert set(body["predictions"]) == {"vehicle_type", "color"}


def test_concurrent_runs_and_a_promote_leave_one_consistent_champion(
    pipeline, sandbox: Sandbox, registry: MlflowClient, root: Path
):
    env = pipeline | {"PIPELINE_GATE_MIN_LOWER_BOUND": "-2"}  # let every run promote, so all three move aliases
    train = [
        sandbox.command("vehicles"),
        "train",
        "--force",
        "-c",
        "logistic_regression",
        *QUICK_TRAINING,
        "--min-improvement",
        "-1",
    ]
    runs = [sandbox.start(train, env=env) for _ in range(2)]
    promote = sandbox.start([sandbox.command("vehicles"), "promote", "--version", "1"], env=env)

    for process, log in [*runs, promote]:
        deadline = time.monotonic() + 2 * COMMAND_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert process.returncode == 0, tail(log)

    aliases = _aliases(registry)
    champion, previous = aliases["champion"], aliases["previous"]
    assert champion != previous
    assert registry.get_model_version(MODEL, champion).tags["promotion.replaced"] == previous
    versions = {str(v.version) for v in registry.search_model_versions(f"name='{MODEL}'")}
    assert versions == {"1", "2", "3", "4", "5"}, "each forced run registered exactly one version"
    assert {champion, previous} <= versions


def test_promoting_across_a_contract_change_says_what_changes_and_needs_yes(
    pipeline, sandbox: Sandbox, registry: MlflowClient
):
    before = _aliases(registry)
    challenger = "3"  # trained on the label-only folder
    assert before["challenger"] == challenger

    refused = _vehicles(sandbox, pipeline, "promote", "--version", challenger)

    assert refused.returncode == 1, refused.stdout + refused.stderr[-3000:]
    assert (
        "attribute 'vehicle_type' is no longer predicted" in refused.stdout
        and "new attribute 'label'" in refused.stdout
    )
    assert "--yes" in refused.stdout and _aliases(registry) == before

    confirmed = _vehicles(sandbox, pipeline, "promote", "--version", challenger, "--yes")

    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr[-3000:]
    assert f"champion is now v{challenger} (previous: v{before['champion']})" in confirmed.stdout
    assert (_aliases(registry)["champion"], _aliases(registry)["previous"]) == (challenger, before["champion"])
