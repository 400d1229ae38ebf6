"""Turning uploads into predictions and predictions into what clients read.

``decode_and_predict`` runs on an inference thread: every upload is decoded on its own (a bad
file gets its own error) and the good ones go through the model in one batch. The rest are
pure functions over prediction records.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from PIL import Image

from vehicle_model.images import ImageDecodeError, ImageLimits, decode_image
from vehicle_model.model import Prediction, VehicleClassifier

WARM_UP_IMAGE_SIZE = (64, 48)


def decode_and_predict(
    classifier: VehicleClassifier, blobs: Sequence[bytes], limits: ImageLimits
) -> list[Prediction | ImageDecodeError]:
    """Decodes each blob and predicts all decodable ones in one batched call.

    Returns:
        One entry per blob, in order: its prediction, or the error that rejected it.
    """
    decoded: list[Image.Image | ImageDecodeError] = []
    for blob in blobs:
        try:
            decoded.append(decode_image(blob, limits))
        except ImageDecodeError as exc:
            decoded.append(exc)
    good = [image for image in decoded if isinstance(image, Image.Image)]
    predictions = iter(classifier.predict_images(good) if good else [])
    return [item if isinstance(item, ImageDecodeError) else next(predictions) for item in decoded]


def warm_up(classifier: VehicleClassifier) -> Prediction:
    """One inference on a blank image: creates the ONNX session and touches every head."""
    return classifier.predict_images([Image.new("RGB", WARM_UP_IMAGE_SIZE, (128, 128, 128))])[0]


def confidence(probabilities: dict[str, float]) -> dict[str, float]:
    """How sure one attribute's prediction is.

    Returns:
        ``max_probability``; ``margin`` (top-1 minus top-2); ``entropy`` in nats; and
        ``normalized_entropy`` in [0, 1] (entropy over log of the class count).
    """
    values = sorted(probabilities.values(), reverse=True)
    top = values[0] if values else 0.0
    second = values[1] if len(values) > 1 else 0.0
    entropy = -sum(p * math.log(p) for p in values if p > 0)
    scale = math.log(len(values)) if len(values) > 1 else 1.0
    return {
        "max_probability": round(top, 6),
        "margin": round(top - second, 6),
        "entropy": round(entropy, 6),
        "normalized_entropy": round(entropy / scale, 6),
    }


def top_k(probabilities: dict[str, float], k: int) -> list[dict[str, Any]]:
    """The k most probable classes, most probable first."""
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)[:k]
    return [{"label": label, "probability": round(p, 6)} for label, p in ranked]


def present(prediction: Prediction, k: int) -> dict[str, dict[str, Any]]:
    """Per attribute: label, top-k classes and confidence."""
    return {
        attribute: {
            "label": result["label"],
            "top_k": top_k(result["probabilities"], k),
            "confidence": confidence(result["probabilities"]),
        }
        for attribute, result in prediction.items()
    }


def class_counts(predictions: Sequence[Prediction]) -> dict[str, dict[str, int]]:
    """Attribute -> predicted label -> how many images got it."""
    counts: dict[str, Counter[str]] = {}
    for prediction in predictions:
        for attribute, result in prediction.items():
            counts.setdefault(attribute, Counter())[str(result["label"])] += 1
    return {attribute: dict(counter.most_common()) for attribute, counter in counts.items()}
