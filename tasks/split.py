"""Dataset fingerprint and the stratified, seeded, duplicate-aware split."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.data import SPLIT_COLUMN, SPLITS
from tasks.validation import SHA_COLUMN


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.70
    validation: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        if min(self.train, self.validation, self.test) <= 0 or abs(self.train + self.validation + self.test - 1) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {self}")


def fingerprint(frame: pd.DataFrame, attributes: Sequence[str]) -> str:
    """sha256 over sorted (content hash, labels) lines: the same data gives the same id
    whatever the file names or row order."""
    lines = sorted(
        "\t".join([row[SHA_COLUMN], *(f"{a}={row[a]}" for a in attributes)])
        for _, row in frame[[SHA_COLUMN, *attributes]].iterrows()
    )
    header = "attributes=" + ",".join(attributes)
    return hashlib.sha256("\n".join([header, *lines]).encode()).hexdigest()


def assign_splits(
    frame: pd.DataFrame, attributes: Sequence[str], seed: int = 0, fractions: SplitFractions = SplitFractions()
) -> pd.Series:
    """Assigns each row to train/validation/test.

    A ``split`` column already in the frame wins. Otherwise rows with identical content
    form one group that lands in one split (no leakage); groups are stratified by the
    label combination when every combination is large enough, else by the first attribute.
    The order depends only on content hashes and the seed, so it is reproducible.
    """
    if SPLIT_COLUMN in frame.columns:
        return frame[SPLIT_COLUMN].copy()
    groups = frame.groupby(SHA_COLUMN, sort=True)[list(attributes)].first()
    strata = _strata(groups, attributes, fractions)
    rng = np.random.default_rng(seed)
    split_of_group: dict[str, str] = {}
    for key in sorted(strata.unique()):
        members = list(strata.index[strata == key])
        order = rng.permutation(len(members))
        for rank, position in enumerate(order):
            split_of_group[members[position]] = _split_at((rank + 0.5) / len(members), fractions)
    return frame[SHA_COLUMN].map(split_of_group).rename(SPLIT_COLUMN)


def _strata(groups: pd.DataFrame, attributes: Sequence[str], fractions: SplitFractions) -> pd.Series:
    combined = groups[list(attributes)].astype(str).agg("|".join, axis=1)
    needed = int(np.ceil(1 / min(fractions.validation, fractions.test)))
    if combined.value_counts().min() >= needed:
        return combined
    return groups[attributes[0]].astype(str)


def _split_at(position: float, fractions: SplitFractions) -> str:
    if position < fractions.train:
        return SPLITS[0]
    if position < fractions.train + fractions.validation:
        return SPLITS[1]
    return SPLITS[2]
