"""The retention window: kept images and their metadata are deleted once they are older than it.

The images that expiry frees go first, then the metadata, so a run that stops half-way is
finished by the next one: no image outlives the window because its record was deleted before
it. (For a moment an expired item's image may be gone while its record is not; it is past the
window, so nothing should need it.) Labels harvested into training data live on there: the
training root is governed by its own policy, not this one.
"""

from __future__ import annotations

import time as clock
from dataclasses import dataclass
from typing import TYPE_CHECKING

from feedback.defaults import RETENTION_DAYS

if TYPE_CHECKING:
    from feedback.images import ImageStore
    from feedback.store import LabelStore

DAY = 86_400.0


@dataclass(frozen=True)
class Expired:
    """One expiry run.

    Attributes:
        cutoff: predictions made before this time (Unix seconds) were deleted with their labels.
        images_deleted: image files deleted.
        images_missing: unreferenced images that were already gone.
    """

    cutoff: float
    images_deleted: int
    images_missing: int


def cutoff(days: float, now: float | None = None) -> float:
    """The oldest prediction time still inside a window of ``days``.

    Raises:
        ValueError: ``days`` is negative.
    """
    if days < 0:
        raise ValueError(f"the retention window must be 0 days or more; got {days}")
    return (clock.time() if now is None else now) - days * DAY


def expire(store: LabelStore, images: ImageStore, days: float = RETENTION_DAYS, now: float | None = None) -> Expired:
    """Deletes the items, labels and images older than ``days``."""
    older_than = cutoff(days, now)
    shas = store.expiring(older_than)
    deleted = sum(images.delete(sha) for sha in shas)
    store.expire(older_than)
    return Expired(older_than, deleted, len(shas) - deleted)
