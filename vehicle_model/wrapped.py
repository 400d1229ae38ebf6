"""A fitted head that answers some rows differently but keeps the head's face.

The wrappers (``calibration.GreyscaleTempered``, ``exposure.OverExposureRouted``) are pickled
inside registered models, so they keep their own module and class names; this base holds
only what they share and no state of its own (an older pickle carries just the subclass's
attributes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class WrappedHead(ABC):
    """A fitted head with changed probabilities on some rows: the same classes, and the label
    its own probabilities favour.

    Attributes:
        head: the wrapped estimator with ``classes_`` and ``predict_proba``.
    """

    head: object

    @property
    def classes_(self) -> np.ndarray:
        return self.head.classes_

    @abstractmethod
    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """[N, n_classes] probabilities for rows of featurizer output."""

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(features).argmax(axis=1)]


def innermost(head: object) -> object:
    """The estimator under every wrapper (the one that holds the fitted parameters)."""
    while isinstance(head, WrappedHead):
        head = head.head
    return head
