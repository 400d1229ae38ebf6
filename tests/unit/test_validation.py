"""``validate_dataset``: each check reports its row in the problem table, and all at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_images import CRAFTED_EXIF

from tasks.data.dataset import load_dataset
from tasks.data.validation import REPORT_COLUMNS, ValidationConfig, ValidationResult, validate_dataset
from vehicle_model.images import ImageLimits

pytestmark = pytest.mark.unit


class Builder:
    """A CSV-manifest dataset in a folder: clean by default, broken one row at a time."""

    def __init__(self, root: Path, with_split: bool = False) -> None:
        self.root = root
        self.with_split = with_split
        self.rows: list[dict[str, str]] = []
        self._seed = 0
        (root / "img").mkdir(parents=True, exist_ok=True)

    def image(self, label: str, split: str = "train", size: int = 8, name: str | None = None) -> Path:
        """Adds a row with a new image of unique content."""
        self._seed += 1
        path = self.root / "img" / (name or f"{label or 'unlabelled'}-{self._seed}.png")
        array = np.random.default_rng(self._seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(array).save(path, "PNG")
        return self.row(path, label, split)

    def row(self, path: Path, label: str, split: str = "train") -> Path:
        row = {"image": str(path.relative_to(self.root)), "label": label}
        if self.with_split:
            row["split"] = split
        self.rows.append(row)
        return path

    def copy(self, source: Path, label: str, split: str = "train", name: str = "copy.png") -> Path:
        target = self.root / "img" / name
        shutil.copy(source, target)
        return self.row(target, label, split)

    def clean(self, per_class: int = 6) -> Builder:
        for label in ("car", "bus"):
            for _ in range(per_class):
                self.image(label)
        return self

    def validate(self, config: ValidationConfig = ValidationConfig()) -> ValidationResult:
        pd.DataFrame(self.rows).to_csv(self.root / "labels.csv", index=False)
        return validate_dataset(load_dataset(self.root), config)


def problems(result: ValidationResult) -> list[dict[str, str]]:
    assert list(result.problems.columns) == REPORT_COLUMNS
    return result.problems.to_dict("records")


def single(result: ValidationResult) -> dict[str, str]:
    found = problems(result)
    assert len(found) == 1, result.problems.to_string()
    return found[0]


def test_clean_dataset_is_ok(tmp_path: Path) -> None:
    result = Builder(tmp_path, with_split=True).clean().validate()

    assert result.ok
    assert result.problems.empty
    assert (result.frame["file"] == "ok").all()
    assert result.frame["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_synthetic_dataset_is_ok(tiny_dataset: Path) -> None:
    assert validate_dataset(load_dataset(tiny_dataset)).ok


def test_missing_file(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    gone = builder.row(tmp_path / "img" / "gone.png", "car")

    assert single(builder.validate()) == {
        "image": str(gone),
        "column": "file",
        "check": "file_exists",
        "value": "missing: file not found",
    }


def test_truncated_image(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    broken = builder.image("car", size=64)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])

    problem = single(builder.validate())

    assert problem["image"] == str(broken)
    assert (problem["column"], problem["check"]) == ("file", "decodes")
    assert problem["value"].startswith("corrupt: ")


def test_crafted_file_that_crashes_pillow_is_one_problem_row(tmp_path: Path) -> None:
    """A file provoking struct.error inside Pillow is reported, not an aborted run."""
    builder = Builder(tmp_path).clean()
    crafted = tmp_path / "img" / "crafted.png"
    crafted.write_bytes(CRAFTED_EXIF["struct.error"][1])
    builder.row(crafted, "car")

    problem = single(builder.validate())

    assert (problem["image"], problem["check"]) == (str(crafted), "decodes")
    assert problem["value"].startswith("corrupt: ")


def test_text_file_posing_as_image(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    text = tmp_path / "img" / "notes.png"
    text.write_text("not an image")
    builder.row(text, "car")

    problem = single(builder.validate())

    assert (problem["image"], problem["check"]) == (str(text), "decodes")
    assert problem["value"].startswith("unsupported_format: ")


def test_over_byte_limit(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    big = builder.image("car", size=128)  # noise does not compress: ~49 kB against ~0.3 kB

    problem = single(builder.validate(ValidationConfig(limits=ImageLimits(max_bytes=10_000))))

    assert (problem["image"], problem["column"], problem["check"]) == (str(big), "file", "within_byte_limit")
    assert problem["value"].startswith("too_large: ")
    assert "10000 bytes" in problem["value"]


def test_over_pixel_limit(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    big = builder.image("car", size=100)

    problem = single(builder.validate(ValidationConfig(limits=ImageLimits(max_pixels=5_000))))

    assert (problem["image"], problem["column"], problem["check"]) == (str(big), "file", "within_pixel_limit")
    assert problem["value"].startswith("too_many_pixels: ")


def test_unknown_label(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    tractor = builder.image("tractor")
    config = ValidationConfig(min_per_class=1, labels={"label": ["car", "bus"]})

    assert single(builder.validate(config)) == {
        "image": str(tractor),
        "column": "label",
        "check": "known_label(bus, car)",
        "value": "tractor",
    }


def test_empty_label(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    unlabelled = builder.image("")

    assert single(builder.validate()) == {
        "image": str(unlabelled),
        "column": "label",
        "check": "label_not_empty",
        "value": "",
    }


def test_class_with_too_few_images(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    builder.image("van")
    builder.image("van")

    assert single(builder.validate()) == {
        "image": "class:van",
        "column": "label",
        "check": "at_least_5_images",
        "value": "2",
    }


def test_min_per_class_is_configurable(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean(per_class=6)
    builder.image("car")  # car: 7, bus: 6

    problem = single(builder.validate(ValidationConfig(min_per_class=7)))

    assert (problem["image"], problem["check"], problem["value"]) == ("class:bus", "at_least_7_images", "6")


def test_same_content_under_conflicting_labels(tmp_path: Path) -> None:
    builder = Builder(tmp_path).clean()
    original = builder.image("car")
    copy = builder.copy(original, "bus")

    copy_row = len(builder.rows)  # manifest rows count from 1; the copy was added last

    found = problems(builder.validate())

    assert found == [
        {
            "image": str(original),
            "column": "label_conflict",
            "check": "same_content_same_labels",
            "value": f"same content labelled label='bus' at row {copy_row} ({copy})",
        },
        {
            "image": str(copy),
            "column": "label_conflict",
            "check": "same_content_same_labels",
            "value": f"same content labelled label='car' at row {copy_row - 1} ({original})",
        },
    ]


def test_same_content_under_the_same_labels_is_allowed(tmp_path: Path) -> None:
    builder = Builder(tmp_path, with_split=True).clean()
    builder.copy(builder.image("car"), "car")

    assert builder.validate().ok


def test_same_content_in_two_splits(tmp_path: Path) -> None:
    builder = Builder(tmp_path, with_split=True).clean()
    original = builder.image("car", split="train")
    copy = builder.copy(original, "car", split="test")

    found = problems(builder.validate())

    assert [(p["image"], p["column"], p["check"]) for p in found] == [
        (str(original), "split_leak", "no_content_in_two_splits"),
        (str(copy), "split_leak", "no_content_in_two_splits"),
    ]
    assert found[0]["value"] == f"same content in split='test' at row {len(builder.rows)} ({copy})"


def test_bad_split_value(tmp_path: Path) -> None:
    builder = Builder(tmp_path, with_split=True).clean()
    odd = builder.image("car", split="holdout")

    assert single(builder.validate()) == {
        "image": str(odd),
        "column": "split",
        "check": "split_in(train, validation, test)",
        "value": "holdout",
    }


def five_problem_dataset(root: Path) -> tuple[Builder, dict[str, str]]:
    """A missing file, a truncated image, an unknown label, a small class and a split leak."""
    builder = Builder(root, with_split=True).clean()
    gone = builder.row(root / "img" / "gone.png", "car")
    broken = builder.image("bus", size=64)
    broken.write_bytes(broken.read_bytes()[:200])
    unknown = builder.image("tractor")
    builder.image("van")
    leaked = builder.image("car", split="train")
    builder.copy(leaked, "car", split="validation", name="leaked-copy.png")
    expected = {
        "file_exists": str(gone),
        "decodes": str(broken),
        "known_label(bus, car, van)": str(unknown),
        "at_least_5_images": "class:van",
        "no_content_in_two_splits": str(leaked),
    }
    return builder, expected


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    builder, expected = five_problem_dataset(tmp_path)
    config = ValidationConfig(labels={"label": ["car", "bus", "van"]})

    result = builder.validate(config)

    assert not result.ok
    reported = {(p["check"], p["image"]) for p in problems(result)}
    assert set(expected.items()) <= reported
    # The only other rows: the tractor is also a class of one, and the leak names both copies.
    assert {check for check, _ in reported} == set(expected)
