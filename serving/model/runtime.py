"""What runs on an inference thread: decoding uploads and predicting them in one batch.

Every upload is decoded on its own (a bad file gets its own error) and the good ones go
through the model in one batched call.
"""

from __future__ import annotations

from collections.abc import Sequence

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
