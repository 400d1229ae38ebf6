"""What the loop stores: a prediction kept for review, a queued one, a label and a harvestable label.

Times are Unix seconds, as in the prediction records (``vehicle_model.records``). An item's id is
the classify request id, or ``"<request_id>:<index>"`` for an image of a batch request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vehicle_model.records import Prediction  # a type only: importing it loads the featurizer


Reason = Literal["uniform", "uncertain", "drifted"]
REASONS: tuple[Reason, ...] = ("uniform", "uncertain", "drifted")
Source = Literal["feedback", "review"]
SOURCES: tuple[Source, ...] = ("feedback", "review")
DECIMALS = 5


def margin(probabilities: Mapping[str, float]) -> float:
    """Top-1 minus top-2 probability: how far the answer was from changing (1.0 for one class)."""
    top = sorted((float(p) for p in probabilities.values()), reverse=True)
    return top[0] - top[1] if len(top) > 1 else 1.0


@dataclass(frozen=True)
class KeptItem:
    """A prediction whose image was kept for review.

    Attributes:
        item_id: the request id, or ``"<request_id>:<index>"`` for a batch item.
        time: when it was predicted.
        region, client: where it came from and who asked.
        model, version: the registered model version that answered.
        predictions: attribute -> ``{"label", "probability", "probabilities": {class: p}}`` and
            ``"decision"`` when the version gives one; the probabilities name the classes a
            reviewer may choose from.
        margin: attribute -> top-1 minus top-2 probability.
        reasons: why it was kept (``REASONS``).
        image_sha: the sha256 of the original upload in the ``ImageStore``.
    """

    item_id: str
    time: float
    region: str
    client: str
    model: str
    version: str
    predictions: dict[str, dict]
    margin: dict[str, float]
    reasons: tuple[str, ...]
    image_sha: str

    @classmethod
    def from_prediction(
        cls,
        item_id: str,
        prediction: Prediction,
        *,
        time: float,
        region: str,
        client: str,
        model: str,
        version: str,
        reasons: tuple[str, ...],
        image_sha: str,
    ) -> KeptItem:
        """Builds the item from one image's prediction as the model service returns it."""
        compact = {}
        for attribute, result in prediction.items():
            probabilities = {str(c): round(float(p), DECIMALS) for c, p in result["probabilities"].items()}
            compact[attribute] = {
                "label": str(result["label"]),
                "probability": max(probabilities.values()),
                "probabilities": probabilities,
                **({"decision": str(result["decision"])} if "decision" in result else {}),
            }
        margins = {a: round(margin(r["probabilities"]), DECIMALS) for a, r in prediction.items()}
        return cls(item_id, float(time), region, client, model, str(version), compact, margins, reasons, image_sha)

    @property
    def labels(self) -> dict[str, str]:
        """What the model answered: attribute -> label."""
        return {attribute: result["label"] for attribute, result in self.predictions.items()}

    @property
    def classes(self) -> dict[str, list[str]]:
        """attribute -> the classes the model knew, most probable first."""
        return {
            attribute: sorted(result["probabilities"], key=lambda c: -result["probabilities"][c])
            for attribute, result in self.predictions.items()
        }

    @property
    def min_margin(self) -> float:
        """The smallest margin over the attributes: the queue takes the lowest first."""
        return min(self.margin.values(), default=1.0)

    @property
    def uniform(self) -> bool:
        return "uniform" in self.reasons


@dataclass(frozen=True)
class QueueItem(KeptItem):
    """A kept item waiting for a label, as the review queue lists it.

    Attributes:
        drifted: its region was among the drifted regions the queue was asked about.
        skipped: a reviewer skipped it (it sorts after every item not skipped).
    """

    drifted: bool = False
    skipped: bool = False


@dataclass(frozen=True)
class PredictionInfo:
    """What a label is joined to when its prediction's image was not kept (from serving's receipt).

    Attributes:
        time, region, client, model, version: as in ``KeptItem``.
        labels: attribute -> what the model answered.
        kept: whether the image was kept (the item may not be stored yet).
        uniform: whether the prediction fell in the uniform sample.
    """

    time: float
    region: str
    client: str
    model: str
    version: str
    labels: dict[str, str]
    kept: bool = False
    uniform: bool = False


@dataclass(frozen=True)
class LabelRow:
    """A label joined to its prediction: enough to score the model without the item.

    Attributes:
        item_id: the labelled prediction.
        labels: attribute -> the label given (possibly only some attributes, for feedback).
        source: ``feedback`` (the client) or ``review`` (a person on the review page or in Label Studio).
        labelled_by: the client or reviewer who gave it.
        labelled_at: when it was given (or last replaced).
        predicted: attribute -> what the model answered.
        predicted_at, region, client, model, version: the prediction's.
        kept: whether the image was kept for review.
        uniform: whether the prediction fell in the uniform sample.
        harvested_batch: the training batch it went into, or None.
    """

    item_id: str
    labels: dict[str, str]
    source: str
    labelled_by: str
    labelled_at: float
    predicted: dict[str, str]
    predicted_at: float
    region: str
    client: str
    model: str
    version: str
    kept: bool
    uniform: bool
    harvested_batch: str | None = None


@dataclass(frozen=True)
class HarvestRow:
    """A label that can become a training example: its image was kept, every attribute is labelled.

    Attributes:
        item_id: the labelled item.
        image_sha: where its image is in the ``ImageStore``.
        labels: attribute -> label, for every attribute the model predicts.
        region, version, source: where it came from, which version answered, who labelled it.
    """

    item_id: str
    image_sha: str
    labels: dict[str, str]
    region: str
    version: str
    source: str
