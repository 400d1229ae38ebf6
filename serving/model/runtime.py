"""What runs on an inference thread: decoding uploads and predicting them in one batch.

Every upload is decoded on its own (a bad file gets its own error) and the good ones go
through the model in one batched call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vehicle_model.images import ImageDecodeError, ImageLimits, decode_image
from vehicle_model.model import VehicleClassifier
from vehicle_model.records import Prediction, summarise

WARM_UP_IMAGE_SIZE = (64, 48)


@dataclass(frozen=True)
class Inferred:
    """What one inference call made of its blobs.

    Attributes:
        results: one entry per blob, in order: its prediction, or the error that rejected it.
        features: the predicted images' featurizer rows, in order: a shadow version trained on
            the same featurizer runs its heads on them instead of paying for the backbone again.
        summaries: the predicted images' summaries for the prediction log
            (``vehicle_model.records.summarise``), in order.
        ms_per_image: the call's decode and model time divided by its blobs (waiting excluded).
    """

    results: list[Prediction | ImageDecodeError]
    features: np.ndarray
    summaries: np.ndarray
    ms_per_image: float


def decode_and_predict(classifier: VehicleClassifier, blobs: Sequence[bytes], limits: ImageLimits) -> Inferred:
    """Decodes each blob and predicts all decodable ones in one batched call."""
    started = time.perf_counter()
    decoded: list[Image.Image | ImageDecodeError] = []
    for blob in blobs:
        try:
            decoded.append(decode_image(blob, limits))
        except ImageDecodeError as exc:
            decoded.append(exc)
    good = [image for image in decoded if isinstance(image, Image.Image)]
    features = classifier.featurizer.transform_images(good)
    predictions = iter(classifier.predict_features(features) if good else [])
    results = [item if isinstance(item, ImageDecodeError) else next(predictions) for item in decoded]
    summaries = summarise(features)
    ms = (time.perf_counter() - started) * 1000 / max(1, len(blobs))
    return Inferred(results, features, summaries, ms)


def warm_up(classifier: VehicleClassifier, images: int = 1) -> Prediction:
    """Inference on ``images`` blank images: creates the ONNX session and touches every head.

    ONNX Runtime's memory arena grows to the largest batch a session has run and keeps that
    memory; warming up with the largest batch the service will form allocates it at load, so
    memory does not step up later under load.
    """
    blank = Image.new("RGB", WARM_UP_IMAGE_SIZE, (128, 128, 128))
    return classifier.predict_images([blank] * images)[0]
