"""Scoring mirrored images with the shadow version, and which backbone it may borrow.

Versions trained on the same featurizer (the usual case: a retrain changes the heads, not the
backbone) read the same features, so the shadow runs only its heads on the champion's feature
rows and holds the champion's ``Featurizer`` instead of a backbone session of its own. A shadow
with another featurizer decodes and embeds the image itself, on one ONNX thread: the calling
thread, whose lowered priority then covers the backbone too (a session with more threads would
run them at normal priority, beside client inference).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from feedback.shadow import Pair, Side, answers_of
from serving.model.source import LoadedModel
from vehicle_model.images import ImageLimits, decode_image
from vehicle_model.metadata import featurizer_version_of
from vehicle_model.records import Prediction


@dataclass(frozen=True)
class Mirrored:
    """One answered image waiting for the shadow.

    Attributes:
        item_id: the answer's id (``request_id``, or ``request_id:index`` in a batch).
        at: when it was answered (epoch seconds).
        region: the request's region.
        champion: the version that answered.
        champion_featurizer: the featurizer version that computed ``features``.
        champion_ms: the champion's decode and model time per image.
        prediction: the champion's answer.
        features: the image's featurizer row from the champion's call.
        image: the upload, kept only when the shadow needs its own backbone pass.
    """

    item_id: str
    at: float
    region: str
    champion: str
    champion_featurizer: str
    champion_ms: float
    prediction: Prediction
    features: np.ndarray
    image: bytes | None = None


def featurizer_version(model: LoadedModel) -> str:
    """The featurizer the version's heads were trained on: its registry metadata, else (a model
    handed in without metadata) the featurizer it runs."""
    return featurizer_version_of(model.metadata) or model.classifier.featurizer.version


def borrow_backbone(shadow: LoadedModel, champion: LoadedModel | None) -> LoadedModel:
    """``shadow`` ready to score mirrored images next to ``champion``, before its warm-up.

    With the champion's featurizer version it takes the champion's ``Featurizer`` object, so no
    second backbone session is ever created (warming it up touches the shadow's heads and the
    champion's existing session). Otherwise it keeps its own featurizer on one ONNX thread.
    Either way it has no ``wide`` view: the shadow never gets every core.
    """
    if champion is not None and featurizer_version(shadow) == featurizer_version(champion):
        classifier = dataclasses.replace(shadow.classifier, featurizer=champion.classifier.featurizer)
    else:
        shadow.classifier.featurizer.threads = 1  # set before the warm-up creates its session
        classifier = shadow.classifier
    return dataclasses.replace(shadow, classifier=classifier, wide=None)


def on_features(shadow: LoadedModel, items: Sequence[Mirrored]) -> list[Pair]:
    """Pairs from the shadow's heads on the champion's features (same featurizer version)."""
    started = time.perf_counter()
    answers = _answers(shadow, np.stack([item.features for item in items]))
    return _pairs(shadow, items, answers, started)


def on_images(shadow: LoadedModel, items: Sequence[Mirrored], limits: ImageLimits) -> list[Pair]:
    """Pairs from the shadow's own decode, backbone and heads (another featurizer version); every
    item carries its image."""
    started = time.perf_counter()
    features = shadow.classifier.featurizer.transform_images([decode_image(item.image, limits) for item in items])
    return _pairs(shadow, items, _answers(shadow, features), started)


def _answers(shadow: LoadedModel, features: np.ndarray) -> list[dict[str, tuple[str, float]]]:
    """Each row's attribute -> (label, its probability): all a pair records, without the full
    answer a client gets (every class's probability, the decision), which costs more than the heads."""
    rows: list[dict[str, tuple[str, float]]] = [{} for _ in range(len(features))]
    for attribute, proba in shadow.classifier.predict_proba_features(features).items():
        labels = np.asarray(shadow.classifier.heads[attribute].classes_).astype(str)
        best = proba.argmax(axis=1)
        for row, (label, confidence) in enumerate(zip(labels[best], proba[np.arange(len(best)), best], strict=True)):
            rows[row][attribute] = (str(label), float(confidence))
    return rows


def _pairs(
    shadow: LoadedModel, items: Sequence[Mirrored], answers: list[dict[str, tuple[str, float]]], started: float
) -> list[Pair]:
    ms = (time.perf_counter() - started) * 1000 / len(items)  # the batch's time, shared evenly
    return [
        Pair(
            item.item_id,
            item.at,
            item.region,
            Side(item.champion, item.champion_ms, answers_of(item.prediction)),
            Side(shadow.version, ms, answer),
        )
        for item, answer in zip(items, answers, strict=True)
    ]
