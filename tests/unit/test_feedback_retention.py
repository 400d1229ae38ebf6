"""Retention: past the window, kept images and their items and labels are deleted, and a run
that stopped half-way is finished by the next."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback.images import ImageStore
from feedback.items import KeptItem
from feedback.retention import DAY, cutoff, expire
from feedback.store import LabelStore

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
PREDICTION = {"vehicle_type": {"label": "car", "probabilities": {"car": 0.6, "bus": 0.4}}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LabelStore]:
    labels = LabelStore(f"sqlite:///{tmp_path}/labels.db")
    yield labels
    labels.close()


def keep(store: LabelStore, images: ImageStore, item_id: str, data: bytes, age_days: float) -> str:
    sha = images.put(data)
    time = NOW - age_days * DAY
    fields = {"region": "north", "client": "acme", "model": "m", "version": "3", "reasons": ("uniform",)}
    store.add_item(KeptItem.from_prediction(item_id, PREDICTION, time=time, image_sha=sha, **fields))
    store.review(item_id, "confirm")
    return sha


def test_images_and_metadata_past_the_window_are_deleted_and_the_rest_stay(store: LabelStore, tmp_path: Path) -> None:
    images = ImageStore(str(tmp_path / "images"))
    old = keep(store, images, "old", b"old bytes", age_days=31)
    shared = keep(store, images, "old-shared", b"shared bytes", age_days=40)
    keep(store, images, "recent-shared", b"shared bytes", age_days=2)

    done = expire(store, images, days=30, now=NOW)

    assert done.cutoff == NOW - 30 * DAY and (done.images_deleted, done.images_missing) == (1, 0)
    assert not images.exists(old) and images.exists(shared)
    assert store.item("old") is None and store.label("old") is None and store.item("old-shared") is None
    assert [r.item_id for r in store.labelled_rows()] == ["recent-shared"]


def test_a_run_stopped_after_deleting_images_is_finished_by_the_next(store: LabelStore, tmp_path: Path) -> None:
    images = ImageStore(str(tmp_path / "images"))
    sha = keep(store, images, "old", b"old bytes", age_days=31)
    for freed in store.expiring(cutoff(30, NOW)):  # the first run stops here
        images.delete(freed)
    assert store.item("old") is not None

    done = expire(store, images, days=30, now=NOW)

    assert (done.images_deleted, done.images_missing) == (0, 1)
    assert store.item("old") is None and not images.exists(sha)


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="0 days or more"):
        cutoff(-1)
