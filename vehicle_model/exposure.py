"""Over-exposed frames get a head of their own.

Over-exposure clips: an orange body's red and green both reach full scale, which is yellow,
and silver goes to white. A head fitted on every kind of frame answers a clipped frame as it
would the unclipped one; the same estimator fitted on over-exposed copies of the training
images alone reads clipped frames far better but clean frames worse (docs/model-quality.md,
round 5). A frame says how much of it is clipped (``featurizer.is_over_exposed``), so those
frames go to that expert and every other frame to the head alone.
"""

from __future__ import annotations

import numpy as np

from vehicle_model.featurizer import is_over_exposed
from vehicle_model.wrapped import WrappedHead


class OverExposureRouted(WrappedHead):
    """A fitted head whose over-exposed rows of featurizer output are answered by ``expert``.

    Args:
        head: a fitted estimator with ``classes_`` and ``predict_proba``: every other row.
        expert: the same kind of estimator fitted on over-exposed frames. Its columns are put
            in the head's class order; a class it never saw gets probability 0.
    """

    def __init__(self, head, expert) -> None:
        self.head = head
        self.expert = expert
        position = {label: i for i, label in enumerate(np.asarray(head.classes_).astype(str))}
        self._columns = [
            (j, position[label]) for j, label in enumerate(np.asarray(expert.classes_).astype(str)) if label in position
        ]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        proba = self.head.predict_proba(features)
        over = is_over_exposed(features)
        if over.any():
            answers = self.expert.predict_proba(features[over])
            routed = np.zeros((len(answers), proba.shape[1]), dtype=proba.dtype)
            for source, target in self._columns:
                routed[:, target] = answers[:, source]
            routed /= np.maximum(routed.sum(axis=1, keepdims=True), 1e-12)
            proba[over] = routed
        return proba
