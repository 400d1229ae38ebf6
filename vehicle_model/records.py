"""What drift is measured on: a fixed projection of the embedding, and the prediction record.

Serving logs one record per classified image and training stores the same records for each
version's validation split (its reference sample), both built here, so the two sides can
never disagree on the format or on how the features were compressed.

Each image is summarised by 38 numbers computed from the model's own features:

- ``features``: the 1280-d backbone embedding projected to ``PROJECTION_DIM`` numbers by a
  fixed Gaussian random matrix. Random projections keep distances between points
  (Johnson-Lindenstrauss), so a shift of the embedding distribution shows as a shift of the
  projected columns. The matrix comes from numpy's legacy ``RandomState``, whose stream is
  frozen (NEP 19), so every process and numpy version builds the same one;
  ``PROJECTION_VERSION`` names it in every record.
- ``tone``: the saturation (3 bins) and value (3 bins) marginals of the whole-image HSV
  histogram of the image as it arrived, before the featurizer's illumination normalisation
  (the last ``TONE_DIM`` columns of featurizer output). The embedding barely moves on darker
  or washed-out shots (the backbone was trained to ignore lighting), nor do the normalised
  histograms; these six numbers move at once (``bench/drift.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from vehicle_model.featurizer import EMBEDDING_DIM, MODEL_DIM, TONE_DIM

# attribute -> {"label": str, "probabilities": {class: p}, "decision": str, "reason": str (unless confident)}
Prediction = dict[str, dict[str, object]]

PROJECTION_DIM = 32
PROJECTION_SEED = 8
PROJECTION_VERSION = f"embedding-gaussian-rp{PROJECTION_DIM}-seed{PROJECTION_SEED}+sv-tone"
SUMMARY_DIM = PROJECTION_DIM + TONE_DIM
DECIMALS = 5  # the log is compared by distribution; more digits only cost bytes
RECORD_FIELD = "record"  # the one field of each stream entry: the record as JSON


def log_key(prefix: str) -> str:
    """The Redis stream serving appends records to (``<REDIS_KEY_PREFIX>:predictions``)."""
    return f"{prefix}:predictions"


def drift_status_key(prefix: str) -> str:
    """The Redis hash the drift flow writes each region's latest status to (region -> JSON)."""
    return f"{prefix}:monitoring:drift"


@lru_cache(maxsize=1)
def projection_matrix() -> np.ndarray:
    """The [1280, 32] float32 matrix, scaled so projected values keep the embedding's scale."""
    rng = np.random.RandomState(PROJECTION_SEED)
    return (rng.standard_normal((EMBEDDING_DIM, PROJECTION_DIM)) / np.sqrt(PROJECTION_DIM)).astype(np.float32)


def project(features: np.ndarray) -> np.ndarray:
    """[N, 32] projections of the embedding part of featurizer output [N, FEATURE_DIM]."""
    return features[:, :EMBEDDING_DIM] @ projection_matrix()


def tone(features: np.ndarray) -> np.ndarray:
    """[N, 6] saturation and value marginals of the un-normalised image, from featurizer output."""
    return features[:, MODEL_DIM : MODEL_DIM + TONE_DIM]


def summarise(features: np.ndarray) -> np.ndarray:
    """[N, SUMMARY_DIM]: the projected embedding, then the tone, of featurizer output."""
    return np.concatenate([project(features), tone(features)], axis=1).astype(np.float32)


def prediction_record(
    prediction: Prediction,
    summary: np.ndarray,
    *,
    region: str,
    model: str,
    version: str,
    time: float,
) -> dict:
    """One log record: when, where, which model, each attribute's label, its probability and
    its decision (``vehicle_model.decisions``), and the image summary (a row of ``summarise``).

    Example::

        {"time": 1764320000.5, "region": "north", "model": "vehicle-classifier", "version": "3",
         "predictions": {"vehicle_type": {"label": "bus", "probability": 0.97, "decision": "confident"}},
         "projection": "embedding-gaussian-rp32-seed8+sv-tone", "features": [0.41237, ...],
         "tone": [0.1, 0.3, 0.6, 0.2, 0.5, 0.3]}
    """
    return {
        "time": round(time, 3),
        "region": region,
        "model": model,
        "version": str(version),
        "predictions": {
            attribute: {
                "label": str(result["label"]),
                "probability": round(_top(result["probabilities"]), DECIMALS),
                # A prediction built without decisions (by hand, or by older code) logs none.
                **({"decision": str(result["decision"])} if "decision" in result else {}),
            }
            for attribute, result in prediction.items()
        },
        "projection": PROJECTION_VERSION,
        "features": [round(float(v), DECIMALS) for v in summary[:PROJECTION_DIM]],
        "tone": [round(float(v), DECIMALS) for v in summary[PROJECTION_DIM:]],
    }


def encode(record: Mapping) -> str:
    return json.dumps(record, separators=(",", ":"))


def decode(raw: str | bytes) -> dict:
    return json.loads(raw)


def as_text(value: bytes | str) -> str:
    """A Redis reply as text: clients that do not decode responses return bytes."""
    return value.decode() if isinstance(value, bytes) else value


def _top(probabilities: Mapping[str, float]) -> float:
    return float(max(probabilities.values()))
