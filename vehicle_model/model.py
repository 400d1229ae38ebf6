"""The classifier that ships as one artifact: featurizer plus one head per attribute."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vehicle_model.decisions import DecisionPolicy, decide
from vehicle_model.featurizer import Featurizer, is_greyscale
from vehicle_model.records import Prediction, summarise


@dataclass
class VehicleClassifier:
    """Featurizer and fitted heads that together turn images into per-attribute probabilities,
    each with a decision whether to trust it (``vehicle_model.decisions``).

    Attributes:
        featurizer: the backbone + colour features used in training.
        heads: attribute name -> fitted scikit-learn estimator with ``predict_proba``.
        policy: the thresholds fitted with the version; None for a version registered
            without them (every answer is then ``uncertain``, colour on greyscale ``undetermined``).
    """

    featurizer: Featurizer
    heads: Mapping[str, object]
    policy: DecisionPolicy | None = None

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
        """One record per row of featurizer output: each attribute's predicted label, every
        class probability, the decision and, unless confident, its reason."""
        probabilities = self.predict_proba_features(features)
        verdicts = decide(self.policy, probabilities, is_greyscale(features))
        classes = self.classes()
        records: list[Prediction] = []
        for row in range(len(features)):
            record: Prediction = {}
            for name, proba in probabilities.items():
                labels = classes[name]
                verdict = verdicts[name][row]
                record[name] = {
                    "label": labels[int(np.argmax(proba[row]))],
                    "probabilities": {label: float(p) for label, p in zip(labels, proba[row])},
                    "decision": verdict.decision,
                    **({"reason": verdict.reason} if verdict.reason else {}),
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
