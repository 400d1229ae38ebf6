"""A fitted head's answers, computed once per feature matrix and kept for whoever scores it next.

Scoring a candidate asks its heads for the same probabilities several times (the metrics, the
decision thresholds, the reports, each on validation and on every shifted and calibration
set), and the vote asks its members again for all of them. Predicting is what costs there (a
nearest-neighbour or kernel head scores every row against its training rows), so a candidate
is scored through ``Remembered`` heads, its answers are saved beside its heads, and the vote
scores its members from those answers instead of predicting again.

Answers are keyed by the bytes of the feature matrix, so an answer is only ever reused for the
very rows it was computed on; anything else is predicted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import joblib
import numpy as np

Answers = dict[str, np.ndarray]


class Remembered:
    """A fitted head whose ``predict_proba`` runs once per distinct feature matrix.

    Args:
        head: a fitted estimator with ``classes_`` and ``predict_proba``.
        answers: answers computed earlier for this head (``answers_path``), by matrix digest.
    """

    def __init__(self, head: object, answers: Answers | None = None) -> None:
        self.head = head
        self.classes_ = head.classes_
        self.answers: Answers = dict(answers or {})

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        key = digest(features)
        if key not in self.answers:
            self.answers[key] = np.asarray(self.head.predict_proba(features))
        return self.answers[key].copy()

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(features).argmax(axis=1)]


def digest(features: np.ndarray) -> str:
    """Names a feature matrix by its shape, dtype and bytes."""
    features = np.ascontiguousarray(features)
    content = hashlib.blake2b(features.view(np.uint8).reshape(-1), digest_size=16).hexdigest()
    return f"{features.dtype.str}{features.shape}:{content}"


def remember(heads: Mapping[str, object], answers: Mapping[str, Answers] | None = None) -> dict[str, Remembered]:
    """Attribute -> the head, remembered (with its earlier answers, if given)."""
    return {attribute: Remembered(head, (answers or {}).get(attribute)) for attribute, head in heads.items()}


def answers_path(heads_path: str | Path) -> Path:
    """Where a candidate's answers are saved, beside its heads."""
    return Path(heads_path).with_suffix(".answers.joblib")


def save_answers(heads: Mapping[str, Remembered], heads_path: str | Path) -> None:
    joblib.dump({attribute: head.answers for attribute, head in heads.items()}, answers_path(heads_path))


def load_answers(heads_path: str | Path) -> dict[str, Answers]:
    """The answers saved beside these heads; none when the file is missing."""
    path = answers_path(heads_path)
    return joblib.load(path) if path.exists() else {}
