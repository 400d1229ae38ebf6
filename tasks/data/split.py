"""Dataset fingerprint and the content-addressed, stable split.

An image's split follows from its content hash and the seed, so it does not move when the
dataset grows: an image tested on yesterday is never trained on today. Only a class too
small to reach every split by hashing alone gets a few of its *new* images moved to the
missing split; the assignment ledger (``SplitLedger``) remembers those moves, so they are
stable too.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.atomic import atomic_file
from tasks.data.dataset import SPLIT_COLUMN, SPLITS
from tasks.data.validation import SHA_COLUMN

TRAIN, VALIDATION, TEST = SPLITS


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.70
    validation: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        if min(self.train, self.validation, self.test) <= 0 or abs(self.train + self.validation + self.test - 1) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {self}")

    @property
    def smallest_covered_class(self) -> int:
        """Fewest images a class needs before every split is guaranteed a member."""
        return int(np.ceil(1 / min(self.validation, self.test)))


def fingerprint(frame: pd.DataFrame, attributes: Sequence[str]) -> str:
    """sha256 over sorted (content hash, labels) lines: the same data gives the same id
    whatever the file names or row order."""
    lines = sorted(
        "\t".join([row[SHA_COLUMN], *(f"{a}={row[a]}" for a in attributes)])
        for _, row in frame[[SHA_COLUMN, *attributes]].iterrows()
    )
    header = "attributes=" + ",".join(attributes)
    return hashlib.sha256("\n".join([header, *lines]).encode()).hexdigest()


def position(sha256: str, seed: int) -> float:
    """A uniform number in [0, 1) that depends on the content and the seed only."""
    digest = hashlib.sha256(f"{seed}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_at(value: float, fractions: SplitFractions) -> str:
    if value < fractions.train:
        return TRAIN
    if value < fractions.train + fractions.validation:
        return VALIDATION
    return TEST


def assign_splits(
    frame: pd.DataFrame,
    attributes: Sequence[str],
    seed: int = 0,
    fractions: SplitFractions = SplitFractions(),
    known: Mapping[str, str] | None = None,
) -> pd.Series:
    """Assigns each row to train/validation/test.

    A user-supplied ``split`` value wins for its row. Otherwise an image keeps its split
    from ``known`` (content hash -> split, the ledger of earlier runs) or takes the one its
    hash position falls in. Identical content always shares a split (no leakage). A class
    (label combination when each is large enough, else the first attribute's class) with at
    least ``fractions.smallest_covered_class`` images but no member in some split gets its
    new image nearest to that split's range moved there; known images never move.
    """
    known = known or {}
    given = frame[SPLIT_COLUMN].fillna("") if SPLIT_COLUMN in frame.columns else pd.Series("", index=frame.index)
    groups = frame[given == ""].groupby(SHA_COLUMN, sort=True)[list(attributes)].first()
    if groups.empty:
        return given.rename(SPLIT_COLUMN)
    positions = pd.Series([position(sha, seed) for sha in groups.index], index=groups.index)
    splits = pd.Series([known.get(sha) or split_at(p, fractions) for sha, p in positions.items()], index=groups.index)
    strata = _strata(groups, attributes, fractions)
    for key in sorted(strata.unique()):
        members = strata.index[strata == key]
        if len(members) >= fractions.smallest_covered_class:
            _cover_every_split(splits, positions, [m for m in members if m not in known], members, fractions)
    assigned = frame[SHA_COLUMN].map(splits)
    return given.where(given != "", assigned).rename(SPLIT_COLUMN)


def _cover_every_split(
    splits: pd.Series, positions: pd.Series, movable: list[str], members: pd.Index, fractions: SplitFractions
) -> None:
    """Moves new members of one class into the splits it lacks, nearest position first."""
    for missing in (TEST, VALIDATION, TRAIN):
        counts = splits[members].value_counts()
        if counts.get(missing, 0):
            continue
        donors = [s for s in counts.index if counts[s] > 1]
        candidates = [m for m in movable if splits[m] in donors]
        if not candidates:
            continue
        nearest = min(candidates, key=lambda m: abs(positions[m] - _centre(missing, fractions)))
        splits[nearest] = missing


def _centre(split: str, fractions: SplitFractions) -> float:
    return {TRAIN: 0.0, VALIDATION: fractions.train + fractions.validation / 2, TEST: 1.0}[split]


def _strata(groups: pd.DataFrame, attributes: Sequence[str], fractions: SplitFractions) -> pd.Series:
    combined = groups[attributes[0]].astype(str)
    for attribute in attributes[1:]:
        combined = combined + "|" + groups[attribute].astype(str)
    if combined.value_counts().min() >= fractions.smallest_covered_class:
        return combined
    return groups[attributes[0]].astype(str)


class SplitLedger:
    """Content hash -> split of every image assigned so far with one seed, in one CSV.

    ``update`` holds an exclusive file lock while it reads, assigns and writes, so two
    runs preparing at the same time agree; the file is replaced atomically (``tasks.data.atomic``).
    """

    def __init__(self, folder: Path, seed: int) -> None:
        self.path = Path(folder) / f"split-ledger-seed{seed}.csv"

    @contextmanager
    def update(self) -> Iterator[dict[str, str]]:
        """Yields the known assignments; whatever the caller adds is written back."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = self.read()
            before = dict(known)
            yield known
            if known != before:
                rows = pd.DataFrame({SHA_COLUMN: list(known), SPLIT_COLUMN: list(known.values())})
                with atomic_file(self.path) as handle:
                    rows.to_csv(handle, index=False)

    def read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        frame = pd.read_csv(self.path, dtype=str)
        return dict(zip(frame[SHA_COLUMN], frame[SPLIT_COLUMN]))
