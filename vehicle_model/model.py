"""The classifier that ships as one artifact: featurizer plus one head per attribute."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vehicle_model.featurizer import Featurizer
from vehicle_model.records import Prediction, summarise


@dataclass
class VehicleClassifier:
    """Featurizer and fitted heads that together turn images into per-attribute probabilities.

    Attributes:
        featurizer: the backbone + colour features used in training.
        heads: attribute name -> fitted scikit-learn estimator with ``predict_proba``.
    """

    featurizer: Featurizer
    heads: Mapping[str, object]

    @property
    def attributes(self) -> list[str]:
        return list(self.heads)

    def classes(self) -> dict[str, list[str]]:
        """Attribute -> class labels in the order of the probability columns."""
        return {name: [str(c) for c in head.classes_] for name, head in self.heads.items()}

    def predict_proba_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Attribute -> [N, n_classes] probabilities for precomputed features."""
        return {name: head.predict_proba(features) for name, head in self.heads.items()}

    def predict_features(self, features: np.ndarray) -> list[Prediction]:
        """One record per row: each attribute's predicted label and every class probability."""
        probabilities = self.predict_proba_features(features)
        classes = self.classes()
        records: list[Prediction] = []
        for row in range(len(features)):
            record: Prediction = {}
            for name, proba in probabilities.items():
                labels = classes[name]
                record[name] = {
                    "label": labels[int(np.argmax(proba[row]))],
                    "probabilities": {label: float(p) for label, p in zip(labels, proba[row])},
                }
            records.append(record)
        return records

    def predict_images(self, images: Sequence[Image.Image]) -> list[Prediction]:
        return self.predict_features(self.featurizer.transform_images(images))

    def predict_bytes(self, blobs: Sequence[bytes]) -> list[Prediction]:
        return self.predict_features(self.featurizer.transform_bytes(blobs))

    def predict_images_summarised(self, images: Sequence[Image.Image]) -> tuple[list[Prediction], np.ndarray]:
        """Predictions plus each image's summary for drift monitoring (``vehicle_model.records.summarise``)."""
        features = self.featurizer.transform_images(images)
        return self.predict_features(features), summarise(features)
