"""Each registered version's reference sample: its validation split as prediction records.

Drift is measured against what the serving version was validated on, so at registration the
winner's heads predict its validation features and the records (the same format serving
logs, ``vehicle_model.records``) become an MLflow artifact of the run that logged the
model; the version's tag ``monitoring.reference`` points to it.
"""

from __future__ import annotations

import time

import joblib
import mlflow
import numpy as np
from mlflow import MlflowClient
from prefect import get_run_logger, task

from tasks.data.features import load_split
from vehicle_model.featurizer import Featurizer
from vehicle_model.model import VehicleClassifier
from vehicle_model.records import decode, encode, prediction_record, summarise

REFERENCE_ARTIFACT = "monitoring/reference.jsonl"
REFERENCE_TAG = "monitoring.reference"
REFERENCE_REGION = "reference"


def reference_records(classifier: VehicleClassifier, features: np.ndarray, model_name: str, version: str) -> list[dict]:
    """The records serving would have logged had it classified these feature rows."""
    now = time.time()
    predictions = classifier.predict_features(features)
    summaries = summarise(features)
    return [
        prediction_record(p, x, region=REFERENCE_REGION, model=model_name, version=version, time=now)
        for p, x in zip(predictions, summaries, strict=True)
    ]


def save_reference(client: MlflowClient, records: list[dict], run_id: str, model_name: str, version: str) -> str:
    """Logs the records as JSON lines on ``run_id`` and tags the version with their URI."""
    client.log_text(run_id, "\n".join(encode(r) for r in records) + "\n", REFERENCE_ARTIFACT)
    uri = f"runs:/{run_id}/{REFERENCE_ARTIFACT}"
    client.set_model_version_tag(model_name, version, REFERENCE_TAG, uri)
    return uri


def load_reference(client: MlflowClient, model_name: str, version: str) -> list[dict]:
    """The version's reference records.

    Raises:
        LookupError: the version has none (registered before monitoring existed).
    """
    uri = client.get_model_version(model_name, version).tags.get(REFERENCE_TAG)
    if not uri:
        raise LookupError(
            f"{model_name} v{version} has no reference sample (tag '{REFERENCE_TAG}'): it was registered "
            "before drift monitoring; retrain (`vehicles train`) to register a version with one"
        )
    return [decode(line) for line in mlflow.artifacts.load_text(uri).splitlines() if line.strip()]


@task(name="log-reference-sample")
def log_reference_task(
    heads_path: str, features: str, attributes: list[str], run_id: str, model_name: str, version: str
) -> str:
    """Computes the version's reference sample on its validation split and logs it."""
    X_val, _ = load_split(features, "validation", attributes)
    classifier = VehicleClassifier(featurizer=Featurizer(), heads=joblib.load(heads_path))
    records = reference_records(classifier, X_val, model_name, version)
    uri = save_reference(MlflowClient(), records, run_id, model_name, version)
    get_run_logger().info("Reference sample for v%s: %d validation records at %s", version, len(records), uri)
    return uri
