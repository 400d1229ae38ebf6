"""The harvest in numbers and words, and the retrain's skip message when labels are waiting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from feedback.items import HarvestRow
from tasks.data.harvest import Harvest, harvest_markdown, name_items, per_region, ready_regions, root_attributes
from tasks.data.ingest import add_batch, check_batch
from tasks.data.validation import REPORT_COLUMNS, ValidationConfig
from tasks.registry.retrain import SkippedRun

pytestmark = pytest.mark.unit

SHA_A, SHA_B = "a" * 64, "b" * 64


def row(item_id: str, region: str, sha: str = SHA_A) -> HarvestRow:
    return HarvestRow(item_id, sha, {"vehicle_type": "car"}, region, "3", "review")


def test_labels_are_counted_per_region_largest_first() -> None:
    rows = [row("r1", "day"), row("r2", "night"), row("r3", "night"), row("r4", "west")]

    assert per_region(rows, ["r1", "r2", "r3"]) == {"night": 2, "day": 1}
    assert ready_regions(rows, min_labels=2) == {"night": 2}


def test_problems_name_the_labelled_items_behind_an_image() -> None:
    rows = [row("req-1", "night", SHA_A), row("req-2:0", "night", SHA_A), row("req-3", "day", SHA_B)]
    problems = pd.DataFrame(
        [
            ["/tmp/harvest-x/reviewed-labels/images/" + SHA_A + ".png", "label_conflict", "same_content", "..."],
            ["class:truck", "vehicle_type", "at_least_5_images", "3"],
        ],
        columns=REPORT_COLUMNS,
    )

    named = name_items(problems, rows)

    assert named["image"].tolist() == [f"items req-1, req-2:0 (image {SHA_A[:12]})", "class:truck"]
    assert named["check"].tolist() == problems["check"].tolist()


def test_the_markdown_says_what_went_in_and_what_was_left_out() -> None:
    harvest = Harvest("/data/root", "20250101T010000Z-reviewed-labels", {"night": 30, "day": 5}, 34, {"r9": "why"}, 2)

    text = harvest_markdown(harvest)

    assert text.startswith("# Harvested 35 labels (34 images) as `20250101T010000Z-reviewed-labels`")
    assert "| night | 30 |\n| day | 5 |" in text
    assert "- `r9`: why" in text and "Retention deleted 2 expired images first." in text
    refused = pd.DataFrame(
        [["items r1 (image aaaa)", "vehicle_type", "same_content_same_labels", "x"]], columns=REPORT_COLUMNS
    )
    nothing = harvest_markdown(Harvest("/data/root", note="1 problems in the harvested labels"), refused)
    assert nothing.startswith("# No labels harvested: 1 problems") and "| items r1 (image aaaa) |" in nothing


def test_the_root_decides_which_attributes_a_harvest_labels(tiny_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert root_attributes(root) is None, "no root yet: the labels decide"
    batch = tmp_path / "first"
    batch.mkdir()
    frame = pd.read_csv(tiny_dataset / "labels.csv").iloc[:40]
    frame.assign(image=[str(tiny_dataset / p) for p in frame["image"]]).to_csv(batch / "labels.csv", index=False)
    add_batch(check_batch(batch, root, ValidationConfig(min_per_class=1)), root, "0001")

    assert root_attributes(root) == ["vehicle_type", "color"]


def skipped(**kwargs) -> SkippedRun:
    return SkippedRun("4", "champion", "4", "/data/root", "abcdef0123456789", "126", **kwargs)


def test_the_skip_says_how_many_images_wait_for_review_and_where() -> None:
    skip = skipped(trigger="drift", drift_regions=("night",), waiting={"night": 37})

    text = skip.markdown()

    assert (
        "- drift was seen but there is nothing new to learn from; 37 images from night are waiting for review "
        "at /label (or `vehicles labels export`)"
    ) in text
    assert "label regions" not in text
    assert skip.line.endswith("; 37 images from night waiting for review")


def test_the_skip_names_every_region_and_the_labels_ready_to_harvest() -> None:
    skip = skipped(waiting={"day": 5, "night": 37}, harvestable={"night": 1})

    text = skip.markdown()

    assert "- 42 images: 37 from night, 5 from day are waiting for review at /label" in text
    assert "- 1 reviewed label from night can be added now: `vehicles labels harvest`" in text
    assert "drift was seen" not in text, "a scheduled run saw no drift"


def test_drift_with_nothing_waiting_still_asks_for_labels() -> None:
    text = skipped(trigger="drift", drift_regions=("eu-west", "us-east")).markdown()

    assert "drift was seen but there is nothing new to learn from; label regions eu-west, us-east" in text
