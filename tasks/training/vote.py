"""The vote: which candidates' heads answer together, and how many, chosen on validation.

Members are chosen per attribute: the heads of one candidate are fitted independently per
attribute, a candidate can be the best at one attribute and among the worst at the other, and
the attribute-mean score is highest when each attribute's vote is best. For each attribute the
candidates are ranked by their validation score and the vote takes the best ``k`` of them,
``k`` from 2 (one member would be that candidate again) to all, the score deciding, ties to the
smaller ``k`` (fewer heads to run).

Choosing the ranking and ``k`` on validation and scoring the result on the same images would
flatter the vote against the candidates, whose validation images chose nothing. So its
validation answers are cross-fitted: validation is cut in ``FOLDS`` folds (seeded), each fold
is answered by the vote chosen on the others, and those answers are what the vote is scored
on. The vote that ships is chosen on all of validation, so the score is that of the procedure,
measured on images it did not see; a choice made on fewer images is noisier, which can only
understate the vote. Five folds rather than two halves: the choice sees four fifths of the
images, and the score moves less with the cut (docs/model-quality.md, "The vote").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tasks.training.evaluation import as_score, weighted_metric
from vehicle_model.vote import VoteHead

VOTE = "vote"
MIN_MEMBERS = 2
FOLDS = 5


@dataclass(frozen=True)
class Vote:
    """The vote chosen on validation, and its cross-fitted validation answers.

    Attributes:
        heads: attribute -> the vote that ships.
        members: attribute -> its members' candidate names, best first.
        validation: attribute -> answers for the validation rows, each fold's from the vote
            chosen on the other folds; score these, not ``heads``, on validation.
    """

    heads: dict[str, VoteHead]
    members: dict[str, list[str]]
    validation: dict[str, CrossFitted]

    def members_line(self) -> str:
        """``attribute=a+b; ...``: one line naming every attribute's members."""
        return "; ".join(f"{attribute}={'+'.join(names)}" for attribute, names in self.members.items())


class CrossFitted:
    """Fixed validation answers in the shape of a head, so the evaluation functions score them
    as they score a candidate's heads (by calling ``predict_proba`` on the validation rows).

    Args:
        classes: labels of the probability columns.
        proba: [N, n_classes] answers for the N validation rows, in their order.
    """

    def __init__(self, classes: np.ndarray, proba: np.ndarray) -> None:
        self.classes_ = classes
        self.proba = proba

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        if len(features) != len(self.proba):
            raise ValueError(f"these answers are for {len(self.proba)} validation rows, not {len(features)}")
        return self.proba.copy()


def choose_vote(
    candidates: Mapping[str, Mapping[str, object]],
    X: np.ndarray,
    ys: Mapping[str, np.ndarray],
    metric: str = "macro_f1",
    seed: int = 0,
    folds: int = FOLDS,
) -> Vote:
    """The best vote of each attribute on validation, with cross-fitted validation answers.

    Args:
        candidates: candidate name -> attribute -> fitted head (at least two candidates).
        X: validation features.
        ys: attribute -> validation labels.
        metric: what ranks the candidates and chooses ``k`` (``SELECTION_METRICS``).
        seed: cuts validation into the folds.
        folds: how many.
    """
    if len(candidates) < MIN_MEMBERS or len(X) < folds:
        raise ValueError(
            f"a vote needs {MIN_MEMBERS}+ candidates and {folds}+ validation rows; got {len(candidates)} and {len(X)}"
        )
    parts = np.array_split(np.random.default_rng(seed).permutation(len(X)), folds)
    heads, members, validation = {}, {}, {}
    for attribute, y in ys.items():
        classes, answers = _aligned_answers({name: heads_of[attribute] for name, heads_of in candidates.items()}, X)
        y = np.asarray(y).astype(str)
        crossed = np.empty((len(X), len(classes)))
        for i, answered in enumerate(parts):
            chosen_on = np.concatenate(parts[:i] + parts[i + 1 :])
            crossed[answered] = _mean(answers, _best_members(classes, answers, y, chosen_on, metric), answered)
        members[attribute] = _best_members(classes, answers, y, np.arange(len(X)), metric)
        heads[attribute] = VoteHead([candidates[name][attribute] for name in members[attribute]], members[attribute])
        validation[attribute] = CrossFitted(classes, crossed)
    return Vote(heads, members, validation)


def _aligned_answers(heads: Mapping[str, object], X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each head's validation probabilities in one class order, the vote's."""
    order = VoteHead(list(heads.values()), list(heads)).classes_
    position = {label: i for i, label in enumerate(order)}
    answers = {}
    for name, head in heads.items():
        aligned = np.zeros((len(X), len(order)))
        aligned[:, [position[label] for label in np.asarray(head.classes_).astype(str)]] = head.predict_proba(X)
        answers[name] = aligned
    return order, answers


def _best_members(
    classes: np.ndarray, answers: Mapping[str, np.ndarray], y: np.ndarray, rows: np.ndarray, metric: str
) -> list[str]:
    """The best ``k`` candidates by ``metric`` on ``rows``, ``k`` chosen there too."""
    ranked = sorted(answers, key=lambda name: -_score(classes, answers[name][rows], y[rows], metric))
    # Scores are rounded so that a difference of float noise does not buy another member.
    scores = {
        k: round(_score(classes, _mean(answers, ranked[:k], rows), y[rows], metric), 9)
        for k in range(MIN_MEMBERS, len(ranked) + 1)
    }
    best = max(scores.values())
    return ranked[: min(k for k, value in scores.items() if value == best)]


def _mean(answers: Mapping[str, np.ndarray], names: Sequence[str], rows: np.ndarray) -> np.ndarray:
    return np.mean([answers[name][rows] for name in names], axis=0)


def _score(classes: np.ndarray, proba: np.ndarray, y: np.ndarray, metric: str) -> float:
    return float(as_score(metric, weighted_metric(classes, proba, y, np.ones((1, len(y))), metric)[0]))
