"""Predictions as clients read them: top-k classes, confidence measures, decisions, counts.

Pure functions over prediction records; no I/O, no model.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from vehicle_model.decisions import DECISIONS
from vehicle_model.records import Prediction


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
    """Per attribute: label, top-k classes, confidence, the decision and, unless confident, why."""
    return {attribute: _attribute(result, k) for attribute, result in prediction.items()}


def _attribute(result: dict[str, Any], k: int) -> dict[str, Any]:
    shown = {
        "label": result["label"],
        "top_k": top_k(result["probabilities"], k),
        "confidence": confidence(result["probabilities"]),
        "decision": result["decision"],
    }
    if result.get("reason"):
        shown["reason"] = result["reason"]
    return shown


def class_counts(predictions: Sequence[Prediction]) -> dict[str, dict[str, int]]:
    """Attribute -> predicted label -> how many images got it."""
    counts: dict[str, Counter[str]] = {}
    for prediction in predictions:
        for attribute, result in prediction.items():
            counts.setdefault(attribute, Counter())[str(result["label"])] += 1
    return {attribute: dict(counter.most_common()) for attribute, counter in counts.items()}


def decision_counts(predictions: Sequence[Prediction]) -> dict[str, dict[str, int]]:
    """Attribute -> decision -> how many images got it; every decision listed, zeros included,
    so a client reads the uncertain share without knowing which decisions exist."""
    counts: dict[str, dict[str, int]] = {}
    for prediction in predictions:
        for attribute, result in prediction.items():
            by_decision = counts.setdefault(attribute, dict.fromkeys(DECISIONS, 0))
            by_decision[str(result["decision"])] += 1
    return counts
