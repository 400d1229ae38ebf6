"""Fixtures for the serving tests: a real registry with two versions, real Redis, real images.

The registry (two logistic-regression versions of ``vehicle-classifier``, ``champion`` on v1;
v1 carries a decision policy whose thresholds are 0, so its answers are confident unless the
frame cannot carry the attribute, v2 none, like a version registered before thresholds
existed) is built once per session; each test gets a copy of its SQLite file (artifacts are shared,
read-only), so tests may move aliases freely.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from serving_helpers import ThrowawayRedis, free_port, policy_at

from serving.model.source import LoadedModel
from serving.settings import ServingSettings
from vehicle_model.model import VehicleClassifier

MODEL_NAME = "vehicle-classifier"
TRAIN_IMAGES = 40


@dataclass(frozen=True)
class RegistryTemplate:
    """A registry built once: its SQLite file and the classifiers it holds, by version."""

    db: Path
    classifiers: dict[str, VehicleClassifier]


def _fit(features, frame, attributes, c: float) -> dict:
    from sklearn.linear_model import LogisticRegression

    return {a: LogisticRegression(C=c, max_iter=1000).fit(features, frame[a].tolist()) for a in attributes}


@pytest.fixture(scope="session")
def registry_template(
    tiny_dataset: Path, _migrated_mlflow_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> RegistryTemplate:
    """Versions 1 (C=1, thresholds 0) and 2 (C=0.05, no policy) of the model, ``champion`` -> 1,
    in a SQLite store."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.data.dataset import load_dataset
    from tasks.registry.versions import log_classifier, register_version
    from vehicle_model.featurizer import Featurizer

    folder = tmp_path_factory.mktemp("serving-registry")
    db = folder / "mlflow.db"
    shutil.copy(_migrated_mlflow_db, db)
    uri = f"sqlite:///{db}"

    dataset = load_dataset(tiny_dataset)
    frame = dataset.frame.iloc[:TRAIN_IMAGES]
    featurizer = Featurizer()
    features = featurizer.transform_paths(frame["image"].tolist())

    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serving-tests", artifact_location=str(folder / "artifacts"))
        classifiers = {}
        for c, policy in ((1.0, policy_at(0.0, dataset.attributes)), (0.05, None)):
            classifier = VehicleClassifier(featurizer, _fit(features, frame, dataset.attributes, c), policy)
            with mlflow.start_run(experiment_id=experiment):
                mlflow.log_metric("test_macro_f1", 0.5 + c / 10)
                info = log_classifier(classifier, {"candidate": "logistic_regression"})
            version = register_version(info.model_uri, MODEL_NAME, {"candidate": "logistic_regression", "C": str(c)})
            classifiers[str(version.version)] = classifier
        MlflowClient(uri).set_registered_model_alias(MODEL_NAME, "champion", "1")
    finally:
        mlflow.set_tracking_uri(previous_uri)
    return RegistryTemplate(db=db, classifiers=classifiers)


@pytest.fixture
def registry_uri(registry_template: RegistryTemplate, tmp_path: Path) -> str:
    """This test's own copy of the registry (champion -> 1)."""
    db = tmp_path / "registry" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(registry_template.db, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def small_model(registry_template: RegistryTemplate) -> LoadedModel:
    """Version 1's classifier as a loaded model, for apps that need no registry."""
    return LoadedModel(
        name=MODEL_NAME,
        version="1",
        alias="champion",
        classifier=registry_template.classifiers["1"],
        tags={"candidate": "logistic_regression"},
        metrics={"test_macro_f1": 0.6},
    )


@pytest.fixture(scope="session")
def sample_images(tiny_dataset: Path) -> dict[str, bytes]:
    """Real dataset images by format: ``jpeg`` and ``png`` bytes, plus several distinct JPEGs."""
    files = sorted((tiny_dataset / "images").iterdir())
    jpegs = [f for f in files if f.suffix == ".jpg"]
    pngs = [f for f in files if f.suffix == ".png"]
    images = {"jpeg": jpegs[0].read_bytes(), "png": pngs[0].read_bytes()}
    for i, path in enumerate(jpegs[1:9]):
        images[f"jpeg{i}"] = path.read_bytes()
    return images


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"test-serving-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def make_settings(tmp_path: Path, registry_uri: str, redis_url: str, redis_prefix: str):
    """Settings for one test: its registry copy, real Redis under its prefix, logs in tmp."""

    def make(**overrides) -> ServingSettings:
        values = dict(
            mlflow_tracking_uri=registry_uri,
            redis_url=redis_url,
            redis_key_prefix=redis_prefix,
            log_dir=tmp_path / "logs",
            # The learning loop's label store and kept images: this test's own, never data/review.
            labels_database_url=f"sqlite:///{tmp_path / 'review' / 'labels.db'}",
            review_images_url=str(tmp_path / "review" / "images"),
            poll_interval_seconds=0.5,
            registry_timeout_seconds=20,
            redis_retry_after_seconds=0.5,
            # Seconds, not the production 1 s: on a loaded two-core machine a healthy Redis can
            # take longer than a second to answer, and a test would then see the memory fallback.
            # Tests whose subject is the timeout set their own.
            redis_timeout_seconds=10.0,
            inference_threads=2,
            api_key=None,
            cors_origins=[],
            rate_limit_per_minute=0,
        )
        values.update(overrides)
        return ServingSettings(**values)

    return make


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A stopped throwaway Redis: call ``start()``; it is stopped at the end of the test."""
    server = ThrowawayRedis(free_port())
    yield server
    server.stop()
