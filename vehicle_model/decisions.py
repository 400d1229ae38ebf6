"""Whether to trust each answer: a decision per attribute, from thresholds fitted with the version.

Every attribute of every answer carries one of three decisions:

- ``confident``: the calibrated score (the largest class probability of the head, which is
  calibrated, greyscale frames included) is at or above the version's threshold for that
  attribute. Thresholds are fitted at training on validation images and their shifted copies,
  as the lowest score at which the answers reach the target precision
  (``tasks.training.selective``).
- ``uncertain``: it is not, or the version has no threshold for the attribute (a version
  registered before thresholds existed, or one where no threshold reached the target).
- ``undetermined``: the frame cannot carry the attribute. Hue does not survive in luminance
  (red and blue, green and silver share one grey), so a colour attribute on a greyscale frame
  (``featurizer.is_greyscale``) is undetermined whatever its score; the label stays the most
  probable class.

Which attributes are colour attributes is recorded in each version's policy when it is
fitted; versions without a policy fall back to the naming rule (``is_colour_attribute``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Decision = Literal["confident", "uncertain", "undetermined"]
CONFIDENT: Decision = "confident"
UNCERTAIN: Decision = "uncertain"
UNDETERMINED: Decision = "undetermined"
DECISIONS: tuple[Decision, ...] = (CONFIDENT, UNCERTAIN, UNDETERMINED)
FORMAT = 1  # of the JSON document; bump when a reader of the old one would misread the new
COLOUR_NAMES = ("color", "colour")
NO_POLICY_REASON = "this version was registered without decision thresholds"


def is_colour_attribute(name: str) -> bool:
    """An attribute is a colour when it is named ``color``/``colour`` or ends in ``_color``/``_colour``."""
    lowered = name.lower()
    return any(lowered == colour or lowered.endswith(f"_{colour}") for colour in COLOUR_NAMES)


def colour_attributes(attributes: Iterable[str]) -> tuple[str, ...]:
    """The colour attributes among ``attributes`` (``is_colour_attribute``), in their order."""
    return tuple(name for name in attributes if is_colour_attribute(name))


@dataclass(frozen=True)
class DecisionPolicy:
    """A version's thresholds and what they were fitted for.

    Attributes:
        thresholds: attribute -> the lowest calibrated score answered confidently; None when
            no threshold reached the target on validation (the attribute is never confident).
        target_precision: the precision the thresholds were fitted to reach.
        colour_attributes: attributes a greyscale frame cannot carry.
        coverage: attribute -> the share of validation answers (shifted copies included) that
            were confident at its threshold; informative only.
    """

    thresholds: Mapping[str, float | None]
    target_precision: float
    colour_attributes: tuple[str, ...] = ()
    coverage: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "target_precision": self.target_precision,
            "thresholds": {a: (None if t is None else float(t)) for a, t in self.thresholds.items()},
            "colour_attributes": list(self.colour_attributes),
            "coverage": {a: float(c) for a, c in self.coverage.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping) -> DecisionPolicy:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown decision policy format {data.get('format')!r}; this code reads {FORMAT}")
        return cls(
            thresholds={a: (None if t is None else float(t)) for a, t in data["thresholds"].items()},
            target_precision=float(data["target_precision"]),
            colour_attributes=tuple(data.get("colour_attributes", ())),
            coverage={a: float(c) for a, c in data.get("coverage", {}).items()},
        )

    @classmethod
    def from_json(cls, text: str) -> DecisionPolicy:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Verdict:
    """One attribute's decision for one image, and why when it is not ``confident``."""

    decision: Decision
    reason: str | None = None


def decide(
    policy: DecisionPolicy | None, probabilities: Mapping[str, np.ndarray], greyscale: np.ndarray
) -> dict[str, list[Verdict]]:
    """Each attribute's verdict for each row of a batch.

    Args:
        policy: the version's policy; None for a version registered without one.
        probabilities: attribute -> [N, n_classes] calibrated probabilities.
        greyscale: N booleans, which rows come from greyscale frames (``featurizer.is_greyscale``).

    Returns:
        Attribute -> N verdicts, in row order.
    """
    colours = policy.colour_attributes if policy is not None else colour_attributes(probabilities)
    verdicts: dict[str, list[Verdict]] = {}
    for attribute, proba in probabilities.items():
        scores = proba.max(axis=1)
        undetermined = greyscale if attribute in colours else np.zeros(len(scores), dtype=bool)
        verdicts[attribute] = [
            _undetermined(attribute) if blind else _by_score(policy, attribute, float(score))
            for score, blind in zip(scores, undetermined)
        ]
    return verdicts


def _undetermined(attribute: str) -> Verdict:
    return Verdict(UNDETERMINED, f"{attribute} cannot be told on a greyscale frame")


def _by_score(policy: DecisionPolicy | None, attribute: str, score: float) -> Verdict:
    if policy is None:
        return Verdict(UNCERTAIN, NO_POLICY_REASON)
    if attribute not in policy.thresholds:
        return Verdict(UNCERTAIN, f"this version has no decision threshold for {attribute}")
    threshold = policy.thresholds[attribute]
    if threshold is None:
        return Verdict(
            UNCERTAIN,
            f"no confidence reached this version's target precision {policy.target_precision:.2f} "
            f"for {attribute} on validation",
        )
    if score < threshold:
        return Verdict(
            UNCERTAIN, f"confidence {score:.3f} is below this version's threshold {threshold:.3f} for {attribute}"
        )
    return Verdict(CONFIDENT)
