"""The MLflow pyfunc wrapper: a list of image bytes in, one record per image out.

Only this module touches MLflow, and only the model-loading side of it.
"""

from __future__ import annotations

import base64
from pathlib import Path

import joblib
import mlflow.pyfunc
import pandas as pd

from vehicle_model.decisions import DecisionPolicy
from vehicle_model.featurizer import Featurizer
from vehicle_model.model import VehicleClassifier
from vehicle_model.records import Prediction

BACKBONE_ARTIFACT = "backbone"
HEADS_ARTIFACT = "heads"
DECISIONS_ARTIFACT = "decisions"  # the thresholds (``vehicle_model.decisions``); absent in older versions
INPUT_COLUMN = "image"


class VehiclePyfunc(mlflow.pyfunc.PythonModel):
    """Loads the ONNX backbone and the fitted heads from the model's own artifacts.

    Args:
        precision: the backbone artifact's precision (``fp32`` or ``int8``), saved with the
            model so a version always runs the backbone it was trained with.
    """

    def __init__(self, precision: str = "fp32") -> None:
        self.precision = precision

    def load_context(self, context) -> None:
        # Versions logged before INT8 existed pickled no precision: their backbone is float.
        precision = getattr(self, "precision", "fp32")
        featurizer = Featurizer(Path(context.artifacts[BACKBONE_ARTIFACT]), precision=precision)
        heads = joblib.load(context.artifacts[HEADS_ARTIFACT])
        self.classifier = VehicleClassifier(featurizer=featurizer, heads=heads, policy=load_policy(context.artifacts))

    # The DataFrame hint tells MLflow not to infer a schema from hints: the logged
    # signature (a binary ``image`` column) is the contract.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[Prediction]:
        """Classifies images given as a DataFrame column ``image`` (or a list of bytes)."""
        blobs = _as_blobs(model_input)
        return self.classifier.predict_bytes(blobs)


def load_policy(artifacts: dict[str, str]) -> DecisionPolicy | None:
    """The version's decision policy; None for a version registered before thresholds existed."""
    path = artifacts.get(DECISIONS_ARTIFACT)
    return DecisionPolicy.from_json(Path(path).read_text()) if path else None


def _as_blobs(model_input) -> list[bytes]:
    if hasattr(model_input, "columns") or isinstance(model_input, dict):
        values = list(model_input[INPUT_COLUMN])
    else:
        values = list(model_input)
    return [v if isinstance(v, (bytes, bytearray)) else base64.b64decode(v) for v in values]
