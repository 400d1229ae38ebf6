"""Batch roots and ingestion on real images: checked against the root, added atomically or not at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tasks.data.dataset import load_dataset
from tasks.data.ingest import add_batch, batch_name, check_batch
from tasks.data.split import fingerprint
from tasks.data.validation import ValidationConfig, validate_dataset

pytestmark = pytest.mark.unit

CONFIG = ValidationConfig(min_per_class=2)


def tiny_rows(tiny_dataset: Path) -> pd.DataFrame:
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    frame["image"] = [str(tiny_dataset / p) for p in frame["image"]]
    return frame


def write_batch(folder: Path, rows: pd.DataFrame) -> Path:
    folder.mkdir(parents=True)
    rows.to_csv(folder / "labels.csv", index=False)
    return folder


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def root_with_a(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A root holding batch A (the first 56 tiny images), added the way ingest adds."""
    root = tmp_path / "root"
    source = write_batch(tmp_path / "a", tiny_rows(tiny_dataset).iloc[:56])
    add_batch(check_batch(source, root, CONFIG), root, "0001-a")
    return root


def test_a_root_of_batches_reads_as_one_snapshot(root_with_a: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    rows = tiny_rows(tiny_dataset)
    source = write_batch(tmp_path / "b", rows.iloc[56:])
    check = check_batch(source, root_with_a, CONFIG)
    assert check.ok, check.problems
    added = add_batch(check, root_with_a, batch_name(source))

    snapshot = load_dataset(root_with_a)
    assert len(snapshot.frame) == 84 and snapshot.attributes == ["vehicle_type", "color"]
    assert added.name.endswith("-b") and (added / "labels.csv").is_file()
    whole = validate_dataset(load_dataset(tiny_dataset)).frame
    together = validate_dataset(snapshot).frame
    assert fingerprint(together, snapshot.attributes) == fingerprint(whole, snapshot.attributes)


def test_same_content_with_other_labels_is_refused_and_nothing_changes(
    root_with_a: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    rows = tiny_rows(tiny_dataset)
    batch = rows.iloc[56:].copy()
    planted = rows.iloc[[0]].assign(vehicle_type=lambda f: "bus" if f["vehicle_type"].iloc[0] != "bus" else "van")
    planted["image"] = str(shutil.copy(planted["image"].iloc[0], tmp_path / "renamed.png"))
    source = write_batch(tmp_path / "b", pd.concat([batch, planted], ignore_index=True))
    before = tree(root_with_a)

    check = check_batch(source, root_with_a, CONFIG)

    assert not check.ok
    [problem] = check.problems.to_dict(orient="records")
    assert (problem["image"], problem["check"]) == (str(tmp_path / "renamed.png"), "same_content_same_labels")
    assert "0001-a" in problem["value"]
    assert tree(root_with_a) == before


def test_a_batch_with_other_attributes_is_refused(root_with_a: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    rows = tiny_rows(tiny_dataset).iloc[56:].drop(columns="color")
    source = write_batch(tmp_path / "b", rows)

    [problem] = check_batch(source, root_with_a, CONFIG).problems.to_dict(orient="records")

    assert problem["check"] == "same_attributes_as_root" and "color" in problem["value"]


def test_small_classes_are_judged_with_the_root(root_with_a: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    """One new image of each class is fine when the root already has enough of them."""
    rows = tiny_rows(tiny_dataset).iloc[56:].drop_duplicates("vehicle_type")
    source = write_batch(tmp_path / "b", rows)

    assert check_batch(source, root_with_a, ValidationConfig(min_per_class=5)).ok
    assert not check_batch(source, tmp_path / "empty-root", ValidationConfig(min_per_class=5)).ok


def test_an_image_folder_batch_takes_the_roots_label_name(tiny_dataset: Path, tmp_path: Path) -> None:
    rows = tiny_rows(tiny_dataset)
    root = tmp_path / "root"
    single = rows[["image", "vehicle_type"]]
    add_batch(check_batch(write_batch(tmp_path / "a", single.iloc[:56]), root, CONFIG), root, "0001-a")
    folder = tmp_path / "folder"
    for row in single.iloc[56:].itertuples():
        (folder / row.vehicle_type).mkdir(parents=True, exist_ok=True)
        shutil.copy(row.image, folder / row.vehicle_type)

    check = check_batch(folder, root, CONFIG)
    assert check.ok, check.problems
    add_batch(check, root, "0002-folder")

    assert load_dataset(root).attributes == ["vehicle_type"] and len(load_dataset(root).frame) == 84


def test_a_single_dataset_is_not_a_batch_root(tiny_dataset: Path, tmp_path: Path) -> None:
    source = write_batch(tmp_path / "b", tiny_rows(tiny_dataset).iloc[:20])

    with pytest.raises(ValueError, match="single dataset"):
        check_batch(source, tiny_dataset, CONFIG)


def test_a_failed_copy_leaves_the_root_as_it_was(root_with_a: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    rows = tiny_rows(tiny_dataset).iloc[56:].copy()
    rows["image"] = [str(shutil.copy(p, tmp_path / Path(p).name)) for p in rows["image"]]
    check = check_batch(write_batch(tmp_path / "b", rows), root_with_a, CONFIG)
    assert check.ok
    before = tree(root_with_a)
    Path(rows["image"].iloc[-1]).unlink()  # vanishes between check and copy

    with pytest.raises(FileNotFoundError):
        add_batch(check, root_with_a, "0002-b")

    assert tree(root_with_a) == before


def test_batches_with_and_without_a_split_column_load_together(tiny_dataset: Path, tmp_path: Path) -> None:
    rows = tiny_rows(tiny_dataset)
    root = tmp_path / "root"
    write_batch(root / "a", rows.iloc[:40].assign(split="train"))
    write_batch(root / "b", rows.iloc[40:])

    dataset = load_dataset(root)

    assert dataset.frame["split"].tolist() == ["train"] * 40 + [""] * 44
    assert validate_dataset(dataset, CONFIG).ok
