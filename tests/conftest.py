"""Shared fixtures: real images, a pre-migrated MLflow SQLite store copied per test, and a
trained v1 (one six-candidate training run per session) copied per test the same way."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tasks.data.synthetic import generate_dataset

if TYPE_CHECKING:
    from flows.training import TrainingSummary

TESTS = Path(__file__).parent
# Each folder's tests carry its tier marker and no other, so `-m` selects a tier exactly.
TIER_OF_FOLDER = {
    "unit": {"unit"},
    "flows": {"flows"},
    "serving": {"serving"},
    "e2e": {"e2e"},
    "stack": {"stack", "images"},
}
TIERS = set().union(*TIER_OF_FOLDER.values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuses a test whose tier marker does not match its folder (a wrong marker hides it from its target)."""
    wrong = []
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        tiers = {mark.name for mark in item.iter_markers()} & TIERS
        if len(tiers) != 1 or not tiers <= TIER_OF_FOLDER.get(folder, set()):
            wrong.append(f"{item.nodeid}: {sorted(tiers) or 'no tier'} in tests/{folder}/")
    if wrong:
        raise pytest.UsageError("tier markers that do not match the folder:\n" + "\n".join(wrong))


def pytest_configure(config: pytest.Config) -> None:
    """Prefect state for the whole session lives in a throwaway home, with no telemetry."""
    import tempfile

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session", autouse=True)
def _review_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A label store and kept-images folder for the session, never the checkout's data/review:
    anything that builds settings without a test's own folders (a CLI command, an app on default
    settings) would otherwise write there and change what a later skipped retrain reports."""
    root = tmp_path_factory.mktemp("review")
    given = {name: os.environ.get(name) for name in ("LABELS_DATABASE_URL", "REVIEW_IMAGES_URL")}
    os.environ["LABELS_DATABASE_URL"] = f"sqlite:///{root / 'labels.db'}"
    os.environ["REVIEW_IMAGES_URL"] = str(root / "images")
    yield
    for name, value in given.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect API for the whole session: flows in this process use it through the harness's
    settings, processes a test starts (the CLI, workers) through ``PREFECT_API_URL``."""
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(get_current_settings().api.url)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """84 synthetic images (12 per vehicle type, every colour present), CSV layout."""
    root = tmp_path_factory.mktemp("tiny")
    generate_dataset(root, n=84, seed=7)
    return root


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite tracking store migrated once per session (migrations cost seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", str(folder / "artifacts"))
    return db


def _use_store_copy(db: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Copies the SQLite file ``db`` into ``store`` and points ``MLFLOW_*`` (settings read them)
    and the active tracking URI at the copy, with new artifacts under ``store``."""
    import mlflow

    store.mkdir(parents=True)
    shutil.copy(db, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(store / "artifacts"))
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def mlflow_store(tmp_path: Path, _migrated_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh MLflow store for one test: a copy of the migrated DB, artifacts in tmp_path.

    Sets ``MLFLOW_TRACKING_URI`` (settings read it) and the active tracking URI.
    """
    import mlflow

    yield _use_store_copy(_migrated_mlflow_db, tmp_path / "mlruns", monkeypatch)
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by every training run of the session: features are keyed by image content and
    featurizer version, so the same images are featurized once."""
    return tmp_path_factory.mktemp("feature-cache")


def _point_pipeline_at(
    root: Path, feature_cache: Path, monkeypatch: pytest.MonkeyPatch, shifted_evaluation: bool = False
) -> None:
    """Pipeline settings for a run in ``root``: its own data, prepared and log folders.

    Candidates run on the thread runner so a test can register an extra (failing) candidate
    in-process; the process pool is exercised by the e2e CLI test. The shifted evaluation set
    (a featurized copy of every test image per shift) is off unless asked for.
    """
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("PIPELINE_PREPARED_DIR", str(root / "prepared"))
    monkeypatch.setenv("PIPELINE_FEATURE_CACHE_DIR", str(feature_cache))
    monkeypatch.setenv("PIPELINE_LOG_DIR", str(root / "logs"))
    # Never the checkout's data/review: the label store decides what a skipped retrain says.
    monkeypatch.setenv("LABELS_DATABASE_URL", f"sqlite:///{root / 'review' / 'labels.db'}")
    monkeypatch.setenv("REVIEW_IMAGES_URL", str(root / "review" / "images"))
    monkeypatch.setenv("PIPELINE_TASK_RUNNER", "thread")
    monkeypatch.setenv("PIPELINE_GATE_MIN_IMAGES", "5")  # the tiny set has ~13 test images
    monkeypatch.setenv("PIPELINE_SHIFTED_EVALUATION", str(shifted_evaluation).lower())
    monkeypatch.delenv("PIPELINE_TRAINING_DATA", raising=False)


@pytest.fixture
def pipeline_env(tmp_path: Path, mlflow_store: str, feature_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the pipeline settings at temp folders and the per-test MLflow store (no shifted
    evaluation set: ``PIPELINE_SHIFTED_EVALUATION=true`` turns it back on)."""
    _point_pipeline_at(tmp_path, feature_cache, monkeypatch)
    return tmp_path


@dataclass(frozen=True)
class TrainedV1:
    """A registry whose v1 is trained and promoted, and the folders its training run wrote.

    Attributes:
        root: the folder of this registry.
        tracking_uri: its SQLite store.
        prepared: its prepared-data folder (split ledger, manifests, features).
        feature_cache: the session's feature cache, shared by every copy.
        dataset: the images v1 was trained on (``tiny_dataset``).
        summary: what the training run returned.
        started: when the training run started; ``finished``: when it ended.
    """

    root: Path
    tracking_uri: str
    prepared: Path
    feature_cache: Path
    dataset: Path
    summary: TrainingSummary
    started: datetime
    finished: datetime

    @property
    def db(self) -> Path:
        return Path(self.tracking_uri.removeprefix("sqlite:///"))


@pytest.fixture(scope="session")
def trained_v1(
    prefect_server: str,
    tiny_dataset: Path,
    _migrated_mlflow_db: Path,
    feature_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> TrainedV1:
    """The suite's one six-candidate training run, on ``tiny_dataset`` with the defaults
    (augmented copies, shifted evaluation set); tests read it or take a copy
    (``trained_v1_copy``), never write to it."""
    import mlflow

    from flows.training import train_pipeline

    root = tmp_path_factory.mktemp("trained-v1")
    previous_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            uri = _use_store_copy(_migrated_mlflow_db, root / "mlruns", monkeypatch)
            _point_pipeline_at(root, feature_cache, monkeypatch, shifted_evaluation=True)
            started = datetime.now(UTC)
            # Below the cost of any grid point: each search tries exactly one, the same every run.
            summary = train_pipeline(data=str(tiny_dataset), time_budget_seconds=0.001)
            finished = datetime.now(UTC)
    finally:
        mlflow.set_tracking_uri(previous_uri)
    return TrainedV1(root, uri, root / "prepared", feature_cache, tiny_dataset, summary, started, finished)


@pytest.fixture
def trained_v1_copy(trained_v1: TrainedV1, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrainedV1]:
    """This test's own copy of ``trained_v1``'s registry and prepared data, with the pipeline
    settings pointed at it as ``pipeline_env`` does (shared feature cache, no shifted set).

    MLflow stores artifact locations as absolute URIs, so the copy's runs, models and
    experiment still point into the template's artifact folder: reading them works, and the
    runs and models a test adds to v1's experiment are written there too, under new ids. Tests
    may add runs and versions; none may delete or overwrite what the template holds.
    """
    import mlflow

    uri = _use_store_copy(trained_v1.db, tmp_path / "mlruns", monkeypatch)
    shutil.copytree(trained_v1.prepared, tmp_path / "prepared")
    _point_pipeline_at(tmp_path, trained_v1.feature_cache, monkeypatch)
    yield replace(trained_v1, root=tmp_path, tracking_uri=uri, prepared=tmp_path / "prepared")
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the tests use; ``make test`` exports REDIS_TEST_URL (it starts one if needed)."""
    return os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")
