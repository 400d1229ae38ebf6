"""Which answered images to keep for review, decided on the request path in microseconds.

The policy (``feedback.sampling``) is pure; what it needs from the outside, which regions are
drifted and how many items the store holds, is read in the background every
``REVIEW_REFRESH_SECONDS`` (``refresh``), never per request. Between two reads the images kept
here are added to the counts, so the caps hold in one process without asking the store; across
replicas they hold to within one refresh interval.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import Literal

from feedback.sampling import HOUR, SamplingPolicy
from vehicle_model.records import Prediction

CapReason = Literal["hourly_cap", "total_cap"]


class Sampler:
    """Draws, applies the policy, and holds the caps.

    Args:
        policy: shares and caps.
        enabled: False keeps nothing (``REVIEW_SAMPLING=false``).
    """

    def __init__(self, policy: SamplingPolicy, enabled: bool = True) -> None:
        self.policy = policy
        self.enabled = enabled
        self.drifted: frozenset[str] = frozenset()
        self._kept_hour: list[float] = []  # kept here since the last refresh, by time
        self._stored_hour = 0
        self._stored_total = 0

    def choose(self, prediction: Prediction, region: str) -> tuple[tuple[str, ...], CapReason | None]:
        """The reasons to keep this image (empty: not kept) and, when a cap refused it, which."""
        if not self.enabled:
            return (), None
        reasons = self.policy.choose(prediction, region in self.drifted, random.random())
        if not reasons:
            return (), None
        now = time.time()
        kept_hour = self._stored_hour + sum(1 for t in self._kept_hour if t > now - HOUR)
        kept_total = self._stored_total + len(self._kept_hour)
        if not self.policy.admits(kept_hour, kept_total):
            return (), "hourly_cap" if kept_hour >= self.policy.max_per_hour else "total_cap"
        self._kept_hour.append(now)
        return reasons, None

    def refresh(self, drifted: Iterable[str], stored_last_hour: int, stored_total: int, as_of: float) -> None:
        """Takes the drifted regions and the store's counts, read at ``as_of``: what was kept
        here before then is in those counts, what was kept since is added to them."""
        self.drifted = frozenset(drifted)
        self._stored_hour = stored_last_hour
        self._stored_total = stored_total
        self._kept_hour = [t for t in self._kept_hour if t > as_of]
