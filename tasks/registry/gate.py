"""The promotion gate: the contract guard, a paired bootstrap of the gain, and the verdict.

Candidate and champion are scored on the same images, none of which either trained on.
The gain is the candidate's selection score minus the champion's; resampling those images
(the same resample for both models) gives a confidence interval of the gain, so a lucky
draw of a few test images does not replace a champion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tasks.defaults import MIN_IMPROVEMENT
from tasks.training.evaluation import as_score, weighted_metric

DECISION_TAG = "promotion.decision"  # promoted, rejected, or pending until the gate has decided
REASON_TAG = "promotion.reason"
Probabilities = Mapping[str, tuple[Sequence[str], np.ndarray]]  # attribute -> (classes, [N, C] probabilities)


@dataclass(frozen=True)
class GatePolicy:
    """What a candidate must show to replace the champion.

    Attributes:
        min_improvement: smallest point gain (selection score) that promotes.
        min_images: fewest shared unseen images the gate will decide on.
        confidence: level of the bootstrap interval of the gain.
        min_lower_bound: the interval's lower bound must be above this.
        resamples: bootstrap resamples.
        seed: seed of the resampling.
    """

    min_improvement: float = MIN_IMPROVEMENT
    min_images: int = 30
    confidence: float = 0.95
    min_lower_bound: float = 0.0
    resamples: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class Comparison:
    """Both models scored on the same images, and the interval of the gain."""

    images: int
    candidate_score: float
    champion_score: float
    gain: float
    ci_low: float
    ci_high: float
    confidence: float


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict and what it was based on."""

    promote: bool
    reason: str
    candidate_score: float
    min_improvement: float
    min_lower_bound: float = 0.0
    champion_version: str | None = None
    comparison: Comparison | None = None
    contract_changes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def champion_score(self) -> float | None:
        return None if self.comparison is None else self.comparison.champion_score

    def tags(self) -> dict[str, str]:
        """Version tags that let a reviewer see why, in the MLflow UI."""
        tags = {
            DECISION_TAG: "promoted" if self.promote else "rejected",
            REASON_TAG: self.reason,
            "promotion.candidate_score": f"{self.candidate_score:.6f}",
        }
        if self.champion_version is not None:
            tags["gate.champion_version"] = self.champion_version
        if self.contract_changes:
            tags["gate.contract_changes"] = "; ".join(self.contract_changes)
        if self.comparison is not None:
            c = self.comparison
            tags |= {
                "promotion.champion_score": f"{c.champion_score:.6f}",
                "gate.images": str(c.images),
                "gate.candidate_score": f"{c.candidate_score:.6f}",
                "gate.gain": f"{c.gain:+.6f}",
                "gate.ci_low": f"{c.ci_low:+.6f}",
                "gate.ci_high": f"{c.ci_high:+.6f}",
                "gate.confidence": f"{c.confidence:g}",
            }
        return tags


def contract_changes(old: Mapping[str, Sequence[str]], new: Mapping[str, Sequence[str]]) -> list[str]:
    """What a client parsing the old model's responses would see change; empty when nothing."""
    changes = [f"attribute '{a}' is no longer predicted" for a in old if a not in new]
    changes += [f"new attribute '{a}'" for a in new if a not in old]
    for attribute in (a for a in old if a in new):
        removed, added = (
            sorted(set(old[attribute]) - set(new[attribute])),
            sorted(set(new[attribute]) - set(old[attribute])),
        )
        if removed:
            changes.append(f"{attribute}: labels {removed} are no longer returned")
        if added:
            changes.append(f"{attribute}: new labels {added}")
    return changes


def weighted_scores(
    probabilities: Probabilities, ys: Mapping[str, np.ndarray], weights: np.ndarray, metric: str
) -> np.ndarray:
    """The selection score (attribute mean, higher is better) under each row of ``weights``,
    a row per bootstrap resample (``evaluation.weighted_metric``); a row of ones is the plain score."""
    per_attribute = [
        weighted_metric(classes, proba, ys[a], weights, metric) for a, (classes, proba) in probabilities.items()
    ]
    return as_score(metric, np.mean(per_attribute, axis=0))


def paired_bootstrap(
    candidate: Probabilities, champion: Probabilities, ys: Mapping[str, np.ndarray], metric: str, policy: GatePolicy
) -> Comparison:
    """Point scores on the shared images and the bootstrap interval of the gain."""
    n = len(next(iter(ys.values())))
    ones = np.ones((1, n))
    candidate_score = float(weighted_scores(candidate, ys, ones, metric)[0])
    champion_score = float(weighted_scores(champion, ys, ones, metric)[0])
    rng = np.random.default_rng(policy.seed)
    gains = []
    for start in range(0, policy.resamples, 250):  # bounded memory on large test sets
        weights = rng.multinomial(n, np.full(n, 1 / n), size=min(250, policy.resamples - start)).astype(float)
        gains.append(weighted_scores(candidate, ys, weights, metric) - weighted_scores(champion, ys, weights, metric))
    tail = (1 - policy.confidence) / 2
    low, high = np.quantile(np.concatenate(gains), [tail, 1 - tail])
    return Comparison(
        images=n,
        candidate_score=candidate_score,
        champion_score=champion_score,
        gain=candidate_score - champion_score,
        ci_low=float(low),
        ci_high=float(high),
        confidence=policy.confidence,
    )


def decide(
    candidate_score: float,
    policy: GatePolicy,
    champion_version: str | None = None,
    comparison: Comparison | None = None,
    changes: Sequence[str] = (),
    images: int = 0,
) -> PromotionDecision:
    """Promotes when there is no champion, or when on enough shared unseen images the gain
    reaches ``min_improvement`` and its interval's lower bound clears ``min_lower_bound``.
    A contract change is never promoted here: a person decides (``vehicles promote --yes``).

    Args:
        candidate_score: the candidate's score on its whole test split.
        policy: the thresholds.
        champion_version: the current champion, None when there is none.
        comparison: both models on the shared images (None when there are none).
        changes: contract changes from the champion to the candidate.
        images: how many shared unseen images there were.
    """
    verdict = dict(
        candidate_score=candidate_score,
        min_improvement=policy.min_improvement,
        min_lower_bound=policy.min_lower_bound,
        champion_version=champion_version,
    )
    if champion_version is None:
        return PromotionDecision(True, "no current champion", **verdict)
    if changes:
        reason = (
            f"contract change from champion v{champion_version}: {'; '.join(changes)}; "
            "promote by hand with `vehicles promote --version N --yes`"
        )
        return PromotionDecision(False, reason, contract_changes=tuple(changes), **verdict)
    if comparison is None or comparison.images < policy.min_images:
        reason = f"only {images} test images that neither model trained on (at least {policy.min_images} needed)"
        return PromotionDecision(False, reason, comparison=comparison, **verdict)
    c = comparison
    interval = f"{c.confidence:.0%} interval [{c.ci_low:+.4f}, {c.ci_high:+.4f}] on {c.images} images"
    if c.gain < policy.min_improvement:
        reason = f"gain {c.gain:+.4f} is below the required {policy.min_improvement} ({interval})"
        return PromotionDecision(False, reason, comparison=c, **verdict)
    if c.ci_low <= policy.min_lower_bound:
        reason = f"gain {c.gain:+.4f} but the {interval} does not clear {policy.min_lower_bound}: could be noise"
        return PromotionDecision(False, reason, comparison=c, **verdict)
    reason = f"beats champion v{champion_version} by {c.gain:+.4f} (>= {policy.min_improvement}; {interval})"
    return PromotionDecision(True, reason, comparison=c, **verdict)


def decision_markdown(
    decision: PromotionDecision, version: str, winner: str, metric: str, test_score: float, failed: Mapping[str, str]
) -> str:
    """The ``promotion-decision`` artifact: what was compared, on how many images, and the verdict."""
    outcome = "promoted to **champion**" if decision.promote else "kept as **challenger**"
    lines = [
        f"# v{version} ({winner}) {outcome}",
        "",
        f"- reason: {decision.reason}",
        f"- test {metric} (own test split): {test_score:.4f}",
    ]
    if decision.champion_version is None:
        lines.append("- champion: none")
    elif decision.comparison is not None:
        c = decision.comparison
        lines += [
            "",
            f"| compared on | candidate v{version} | champion v{decision.champion_version} | gain "
            f"| {c.confidence:.0%} interval |",
            "|---|---|---|---|---|",
            f"| {c.images} test images neither trained on | {c.candidate_score:.4f} | {c.champion_score:.4f} "
            f"| {c.gain:+.4f} | [{c.ci_low:+.4f}, {c.ci_high:+.4f}] |",
            "",
            f"- rule: promote when gain >= {decision.min_improvement} "
            f"and the interval's lower bound > {decision.min_lower_bound}",
        ]
    for change in decision.contract_changes:
        lines.append(f"- contract change: {change}")
    lines.append(
        "- failed candidates:" + ("".join(f"\n  - {name}: {error}" for name, error in failed.items()) or " none")
    )
    return "\n".join(lines) + "\n"
