"""A soft vote: several fitted heads of one attribute answer together with their mean probabilities.

Each member is a fitted head as a candidate ships it (wrappers included), so every member's
probabilities are already calibrated, greyscale frames tempered and over-exposed ones routed;
the vote only averages what they answer. The backbone runs once per frame whatever the number
of members: a vote costs its members' heads, nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class VoteHead:
    """Fitted heads of one attribute whose ``predict_proba`` is the mean of theirs.

    The members may order their classes differently, or miss one (a class none of a member's
    training rows had): each member's columns are put in the vote's class order, the sorted
    union of the members' classes, and a class a member never saw gets its probability 0. Each
    member's row sums to 1, so the mean does too.

    Args:
        members: fitted estimators with ``classes_`` and ``predict_proba``.
        names: what each member is called (the candidate it comes from), for whoever reads the model.
    """

    def __init__(self, members: Sequence[object], names: Sequence[str]) -> None:
        if len(members) != len(names) or not members:
            raise ValueError(f"a vote needs one name per member and at least one member; got {len(members)} members")
        self.members = list(members)
        self.names = [str(name) for name in names]
        self.classes_ = np.unique(np.concatenate([np.asarray(m.classes_).astype(str) for m in self.members]))
        position = {label: i for i, label in enumerate(self.classes_)}
        self._columns = [[position[label] for label in np.asarray(m.classes_).astype(str)] for m in self.members]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """[N, n_classes] mean of the members' probabilities for rows of featurizer output."""
        total = np.zeros((len(features), len(self.classes_)))
        for member, columns in zip(self.members, self._columns):
            total[:, columns] += member.predict_proba(features)
        return total / len(self.members)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(features).argmax(axis=1)]

    def __repr__(self) -> str:
        return f"VoteHead({' + '.join(self.names)})"
