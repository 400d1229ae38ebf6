"""Honest confidence on greyscale frames: a head's probabilities there get their own temperature.

An infrared night camera keeps only luminance, and several body colours share one grey
(red and blue, green and silver), so a colour head cannot be right there as often as on
colour frames; fitted on colour frames, it is as sure of itself there as anywhere. Greyscale
is the one shift a frame announces (``featurizer.is_greyscale``), so it is the one whose
confidence can be corrected at prediction time: a temperature fitted on greyscale copies of
the validation images (``tasks.training.search.fit_greyscale_temperature``). Colour frames are
left exactly as the head answers them.
"""

from __future__ import annotations

import numpy as np

from vehicle_model.featurizer import is_greyscale
from vehicle_model.wrapped import WrappedHead


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their log-odds divided by ``temperature`` (> 1 is less sure)."""
    logits = np.log(np.clip(proba, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


class GreyscaleTempered(WrappedHead):
    """A fitted head whose probabilities on greyscale rows of featurizer output are tempered.

    Args:
        head: a fitted estimator with ``classes_`` and ``predict_proba``.
        temperature: applied to greyscale rows only.
    """

    def __init__(self, head, temperature: float) -> None:
        self.head = head
        self.temperature = float(temperature)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        proba = self.head.predict_proba(features)
        grey = is_greyscale(features)
        if grey.any():
            proba[grey] = temper(proba[grey], self.temperature)
        return proba
