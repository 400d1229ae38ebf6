"""Unit tests for the synthetic vehicle dataset generator.

These pin the properties the rest of the pipeline relies on: reproducibility
(cached features and registered models refer to the data by seed), a stable
CSV contract, balanced classes and enough visual variety to be a fair test.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tasks.data.synthetic import COLORS, VEHICLE_TYPES, generate_dataset

pytestmark = pytest.mark.unit


def _read_rows(labels: Path) -> list[dict[str, str]]:
    with labels.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` keyed by relative path, for byte comparison."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


@pytest.mark.unit
def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    first = generate_dataset(tmp_path / "a", n=20, seed=3).parent
    second = generate_dataset(tmp_path / "b", n=20, seed=3).parent
    other = generate_dataset(tmp_path / "c", n=20, seed=4).parent

    snap = _snapshot(first)
    assert len(snap) == 21  # 20 images + labels.csv
    assert snap == _snapshot(second)

    other_snap = _snapshot(other)
    images = [k for k in snap if k.startswith("images/")]
    assert all(snap[k] != other_snap.get(k) for k in images)
    assert snap["labels.csv"] != other_snap["labels.csv"]


@pytest.mark.unit
def test_csv_contract_labels_and_files(tmp_path: Path) -> None:
    seen: list[int] = []
    labels = generate_dataset(tmp_path, n=24, seed=0, progress=seen.append)

    assert labels == tmp_path / "labels.csv"
    assert seen == list(range(1, 25))
    with labels.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == ["image", "vehicle_type", "color"]

    rows = _read_rows(labels)
    stems = [Path(r["image"]).stem for r in rows]
    assert stems == [f"{i:06d}" for i in range(24)]
    for row in rows:
        assert row["vehicle_type"] in VEHICLE_TYPES
        assert row["color"] in COLORS
        path = tmp_path / row["image"]
        assert row["image"].startswith("images/") and path.is_file()
        with Image.open(path) as image:
            image.load()
            assert image.mode == "RGB" and min(image.size) >= 100


@pytest.mark.unit
def test_classes_are_balanced(tmp_path: Path) -> None:
    rows = _read_rows(generate_dataset(tmp_path, n=70, seed=1))

    types = Counter(r["vehicle_type"] for r in rows)
    colors = Counter(r["color"] for r in rows)
    assert set(types) == set(VEHICLE_TYPES)
    assert max(types.values()) - min(types.values()) <= 1
    assert set(colors) == set(COLORS)
    assert max(colors.values()) - min(colors.values()) <= 1


@pytest.mark.unit
def test_images_vary_in_size_and_format(tmp_path: Path) -> None:
    rows = _read_rows(generate_dataset(tmp_path, n=40, seed=0))

    sizes, formats = set(), set()
    for row in rows:
        with Image.open(tmp_path / row["image"]) as image:
            sizes.add(image.size)
            formats.add(image.format)
    assert len(sizes) >= 3
    assert len(formats) >= 2


@pytest.mark.unit
def test_concurrent_generations_never_share_a_folder(tmp_path: Path) -> None:
    """A second generator that runs to completion while the first is mid-way (as two flow
    runs resolving ``synthetic`` at once do) finds nothing half written and leaves one
    complete dataset; no staging folder is left behind."""
    out = tmp_path / "synthetic"
    seen_mid_way: list[set[str]] = []

    def first_progress(done: int) -> None:
        if done == 5:
            seen_mid_way.append(set(_snapshot(out)) if out.exists() else set())
            generate_dataset(out, n=12, seed=1, replace=False)

    generate_dataset(out, n=12, seed=2, progress=first_progress, replace=False)

    assert seen_mid_way == [set()]  # the first generator wrote nothing into ``out`` yet
    assert _snapshot(out) == _snapshot(generate_dataset(tmp_path / "expected", n=12, seed=1).parent)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expected", "synthetic"]


@pytest.mark.unit
def test_regenerating_replaces_the_whole_dataset(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "d", n=8, seed=0)
    generate_dataset(tmp_path / "d", n=3, seed=5)

    assert _snapshot(tmp_path / "d") == _snapshot(generate_dataset(tmp_path / "e", n=3, seed=5).parent)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "e"]
