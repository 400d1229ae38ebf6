"""What runs on an inference thread: decoding uploads and predicting them in one batch.

Every upload is decoded on its own (a bad file gets its own error) and the good ones go
through the model in one batched call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from vehicle_model.images import ImageDecodeError, ImageLimits, decode_image
from vehicle_model.model import VehicleClassifier
from vehicle_model.records import SUMMARY_DIM, Prediction

WARM_UP_IMAGE_SIZE = (64, 48)


def decode_and_predict(
    classifier: VehicleClassifier, blobs: Sequence[bytes], limits: ImageLimits
) -> tuple[list[Prediction | ImageDecodeError], np.ndarray]:
    """Decodes each blob and predicts all decodable ones in one batched call.

    Returns:
        One entry per blob, in order: its prediction, or the error that rejected it; and the
        predicted images' summaries for the prediction log (``vehicle_model.records``), in order.
    """
    decoded: list[Image.Image | ImageDecodeError] = []
    for blob in blobs:
        try:
            decoded.append(decode_image(blob, limits))
        except ImageDecodeError as exc:
            decoded.append(exc)
    good = [image for image in decoded if isinstance(image, Image.Image)]
    predicted, summaries = classifier.predict_images_summarised(good) if good else ([], np.empty((0, SUMMARY_DIM)))
    predictions = iter(predicted)
    return [item if isinstance(item, ImageDecodeError) else next(predictions) for item in decoded], summaries


def warm_up(classifier: VehicleClassifier, images: int = 1) -> Prediction:
    """Inference on ``images`` blank images: creates the ONNX session and touches every head.

    ONNX Runtime's memory arena grows to the largest batch a session has run and keeps that
    memory; warming up with the largest batch the service will form allocates it at load, so
    memory does not step up later under load.
    """
    blank = Image.new("RGB", WARM_UP_IMAGE_SIZE, (128, 128, 128))
    return classifier.predict_images([blank] * images)[0]
