"""Harvest: labels become a batch folder that ``ingest`` reads and adds like any other batch;
rows that cannot go in are left out with the reason, and stay harvestable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from feedback.harvest import write_batch
from feedback.images import ImageStore
from feedback.items import HarvestRow
from tasks.data.dataset import load_dataset
from tasks.data.ingest import add_batch, check_batch
from tasks.data.validation import ValidationConfig

pytestmark = pytest.mark.unit

CONFIG = ValidationConfig(min_per_class=2)


def harvest_rows(frame: pd.DataFrame, images: ImageStore) -> list[HarvestRow]:
    """Each manifest row as a harvestable label whose image was kept by serving."""
    return [
        HarvestRow(
            item_id=f"req-{i}",
            image_sha=images.put(Path(row["image"]).read_bytes()),
            labels={"vehicle_type": row["vehicle_type"], "color": row["color"]},
            region="night",
            version="3",
            source="review",
        )
        for i, row in frame.iterrows()
    ]


def test_a_harvested_batch_is_added_by_ingest_like_any_other(tiny_dataset: Path, tmp_path: Path) -> None:
    frame = load_dataset(tiny_dataset).frame
    root = tmp_path / "root"
    first = tmp_path / "first"
    first.mkdir()
    frame.iloc[:56].to_csv(first / "labels.csv", index=False)
    add_batch(check_batch(first, root, CONFIG), root, "0001-first")
    images = ImageStore(str(tmp_path / "kept"))

    batch = write_batch(harvest_rows(frame.iloc[56:], images), images, tmp_path / "harvest")

    assert batch.item_ids == [f"req-{i}" for i in range(56, 84)] and batch.skipped == {}
    assert batch.attributes == ["vehicle_type", "color"]
    check = check_batch(batch.folder, root, CONFIG)
    assert check.ok, check.problems
    add_batch(check, root, "0002-labels")
    snapshot = load_dataset(root)
    assert len(snapshot.frame) == 84 and snapshot.attributes == ["vehicle_type", "color"]


def test_rows_that_cannot_go_in_are_left_out_with_the_reason(tiny_dataset: Path, tmp_path: Path) -> None:
    frame = load_dataset(tiny_dataset).frame.iloc[:6]
    images = ImageStore(str(tmp_path / "kept"))
    rows = harvest_rows(frame, images)
    twin = HarvestRow("twin", rows[0].image_sha, rows[0].labels, "night", "3", "feedback")  # same image, same labels
    clash = HarvestRow("clash", rows[1].image_sha, {**rows[1].labels, "color": "other"}, "night", "3", "feedback")
    partial = HarvestRow("partial", rows[2].image_sha, {"vehicle_type": "car"}, "night", "3", "feedback")
    images.delete(rows[3].image_sha)
    junk = HarvestRow("junk", images.put(b"not an image"), rows[4].labels, "night", "3", "feedback")

    batch = write_batch([*rows, twin, clash, partial, junk], images, tmp_path / "harvest")

    assert sorted(batch.item_ids) == sorted(["req-0", "twin", "req-2", "req-4", "req-5"])
    assert set(batch.skipped) == {"req-1", "clash", "partial", "req-3", "junk"}
    assert "labelled differently" in batch.skipped["clash"] and "expired" in batch.skipped["req-3"]
    assert "the batch labels ['color', 'vehicle_type']" in batch.skipped["partial"]
    written = pd.read_csv(batch.folder / "labels.csv", dtype=str)
    assert list(written.columns) == ["image", "vehicle_type", "color"] and len(written) == 4
    assert sorted(p.name for p in (batch.folder / "images").iterdir()) == sorted(Path(p).name for p in written.image)


def test_nothing_to_harvest_writes_no_folder_and_a_used_folder_is_refused(tmp_path: Path) -> None:
    images = ImageStore(str(tmp_path / "kept"))

    batch = write_batch([], images, tmp_path / "empty")
    assert batch.item_ids == [] and not batch.folder.exists()

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "labels.csv").write_text("image,label\n")
    with pytest.raises(FileExistsError, match="not empty"):
        write_batch([], images, tmp_path / "used")
