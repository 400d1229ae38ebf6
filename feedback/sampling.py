"""Which predictions to keep for review, and why.

Three reasons, each an independent chance:

- ``uniform``: kept with probability ``uniform_share`` whatever the prediction, decided on the
  item's ``draw`` alone (``draw < uniform_share``). Nothing about the image or the answer
  enters that decision, so the uniform items are an unbiased sample of all traffic and
  accuracy measured on them is not skewed by the targeted reasons below.
- ``uncertain``: some attribute's ``decision`` is ``uncertain`` (``vehicle_model.decisions``);
  for an attribute answered without a decision, its margin (top-1 minus top-2 probability) is
  below the version's threshold for it, else below ``DEFAULT_MARGIN``. Kept with probability
  ``uncertain_share``. ``undetermined`` does not count: it marks a colour on a greyscale frame,
  which a person cannot label either.
- ``drifted``: the region's latest drift status says drift. Kept with probability ``drifted_share``.

The targeted reasons use a second uniform number derived from the same draw: ``draw /
uniform_share`` when the uniform test passed, else ``(draw - uniform_share) / (1 -
uniform_share)``. Either way it is uniform on [0, 1) and independent of the uniform decision,
so one random number per item serves both and no reason's chance depends on another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from feedback.items import margin

if TYPE_CHECKING:
    from vehicle_model.records import Prediction  # a type only: importing it loads the featurizer

DEFAULT_MARGIN = 0.2
UNCERTAIN_DECISION = "uncertain"
HOUR = 3600.0


@dataclass(frozen=True)
class SamplingPolicy:
    """How much of the traffic is kept, and the caps that bound it.

    Attributes:
        uniform_share: chance that any prediction is kept as part of the uniform sample.
        uncertain_share: chance that an uncertain prediction is kept.
        drifted_share: chance that a prediction from a drifted region is kept.
        max_per_hour: most items kept in any hour (over all replicas, counted in the store).
        max_total: most items held at once (expiry makes room again).
    """

    uniform_share: float = 0.02
    uncertain_share: float = 0.25
    drifted_share: float = 0.5
    max_per_hour: int = 200
    max_total: int = 20000

    def __post_init__(self) -> None:
        for name in ("uniform_share", "uncertain_share", "drifted_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1; got {getattr(self, name)}")
        for name in ("max_per_hour", "max_total"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more; got {getattr(self, name)}")

    def choose(
        self,
        prediction: Prediction,
        drifted: bool,
        draw: float,
        *,
        margin_thresholds: Mapping[str, float] | None = None,
    ) -> tuple[str, ...]:
        """The reasons to keep one image's prediction; empty when it is not kept.

        Args:
            prediction: attribute -> ``{"label", "probabilities", "decision"?}``.
            drifted: the region's latest drift status says drift.
            draw: one uniform number in [0, 1) for this item.
            margin_thresholds: attribute -> the version's margin threshold, where known.
        """
        if not 0.0 <= draw < 1.0:
            raise ValueError(f"draw must be in [0, 1); got {draw}")
        uniform = draw < self.uniform_share
        second = draw / self.uniform_share if uniform else (draw - self.uniform_share) / (1.0 - self.uniform_share)
        reasons = ["uniform"] if uniform else []
        if second < self.uncertain_share and is_uncertain(prediction, margin_thresholds):
            reasons.append("uncertain")
        if second < self.drifted_share and drifted:
            reasons.append("drifted")
        return tuple(reasons)

    def admits(self, kept_last_hour: int, kept_total: int) -> bool:
        """Whether one more item fits under both caps."""
        return kept_last_hour < self.max_per_hour and kept_total < self.max_total


def is_uncertain(prediction: Prediction, margin_thresholds: Mapping[str, float] | None = None) -> bool:
    """Some attribute is uncertain: by its decision when given, else by its margin."""
    thresholds = margin_thresholds or {}
    for attribute, result in prediction.items():
        if "decision" in result:
            if result["decision"] == UNCERTAIN_DECISION:
                return True
        elif margin(result["probabilities"]) < thresholds.get(attribute, DEFAULT_MARGIN):
            return True
    return False
