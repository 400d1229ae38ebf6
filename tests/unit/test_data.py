"""``load_dataset``: CSV manifests and ImageFolders become one manifest frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.data.dataset import load_dataset
from tasks.data.validation import validate_dataset

pytestmark = pytest.mark.unit


def write_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, "PNG")
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_csv_file_and_its_folder_load_the_same(tiny_dataset: Path) -> None:
    from_file = load_dataset(tiny_dataset / "labels.csv")
    from_folder = load_dataset(tiny_dataset)

    assert from_file.attributes == ["vehicle_type", "color"]
    assert len(from_file.frame) == 84
    assert not from_file.has_split
    pd.testing.assert_frame_equal(from_file.frame, from_folder.frame)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in from_file.frame["image"])


def test_relative_paths_resolve_against_the_csv_folder_and_absolute_ones_stay(tmp_path: Path) -> None:
    relative = write_image(tmp_path / "data" / "images" / "a.png", 1)
    elsewhere = write_image(tmp_path / "elsewhere" / "b.png", 2)
    csv = write_csv(
        tmp_path / "data" / "manifest.csv",
        [{"image": "images/a.png", "label": "car"}, {"image": str(elsewhere), "label": "bus"}],
    )

    dataset = load_dataset(csv)

    assert list(dataset.frame["image"]) == [str(relative), str(elsewhere)]
    assert dataset.root == csv.parent


def test_split_column_is_kept_and_normalised(tmp_path: Path) -> None:
    rows = [
        {"image": "a.png", "label": "car", "split": " Train "},
        {"image": "b.png", "label": "car", "split": "VALIDATION"},
        {"image": "c.png", "label": "car", "split": "test"},
    ]
    dataset = load_dataset(write_csv(tmp_path / "labels.csv", rows))

    assert dataset.has_split
    assert dataset.attributes == ["label"]
    assert list(dataset.frame["split"]) == ["train", "validation", "test"]


def test_every_other_column_is_an_attribute_in_manifest_order(tmp_path: Path) -> None:
    rows = [{"image": "a.png", "vehicle_type": "van", "split": "train", "color": "red", "make": ""}]

    dataset = load_dataset(write_csv(tmp_path / "labels.csv", rows))

    assert dataset.attributes == ["vehicle_type", "color", "make"]
    assert dataset.frame.loc[0, "make"] == ""  # empty stays a string for validation to report


@pytest.mark.parametrize("attribute", ["label", "vehicle_type"])
def test_image_folder_uses_folder_names_as_the_attribute(tmp_path: Path, attribute: str) -> None:
    write_image(tmp_path / "bus" / "1.png", 1)
    write_image(tmp_path / "car" / "1.png", 2)
    write_image(tmp_path / "car" / "nested" / "2.png", 3)

    dataset = load_dataset(tmp_path, attribute=attribute)

    assert dataset.attributes == [attribute]
    assert not dataset.has_split
    assert sorted(dataset.frame[attribute]) == ["bus", "car", "car"]
    assert set(dataset.frame["image"]) == {
        str(tmp_path / "bus" / "1.png"),
        str(tmp_path / "car" / "1.png"),
        str(tmp_path / "car" / "nested" / "2.png"),
    }


def test_image_folder_ignores_hidden_files_and_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "car" / "1.png")
    (tmp_path / "car" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_image(tmp_path / "car" / ".ipynb_checkpoints" / "1-checkpoint.png")
    write_image(tmp_path / ".cache" / "x.png")

    dataset = load_dataset(tmp_path)

    assert list(dataset.frame["image"]) == [str(tmp_path / "car" / "1.png")]
    assert list(dataset.frame["label"]) == ["car"]


def test_manifest_without_image_column_is_a_clear_error(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "labels.csv", [{"path": "a.png", "label": "car"}])

    with pytest.raises(ValueError, match=r"needs an 'image' column; found \['path', 'label'\]"):
        load_dataset(csv)


def test_manifest_without_label_column_is_a_clear_error(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "labels.csv", [{"image": "a.png", "split": "train"}])

    with pytest.raises(ValueError, match="at least one label column"):
        load_dataset(csv)


def test_missing_path_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        load_dataset(tmp_path / "nope")


def test_folder_without_classes_or_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no 'labels.csv' and no class folders"):
        load_dataset(tmp_path)


def save_variants(folder: Path, seed: int) -> None:
    """The same picture as palette PNG, CMYK JPEG, WebP, BMP, 16-bit TIFF and animated GIF."""
    folder.mkdir(parents=True, exist_ok=True)
    base = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    rgb = Image.fromarray(base)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(folder / "palette.png", "PNG", transparency=0)
    rgb.convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    rgb.save(folder / "photo.webp", "WEBP")
    rgb.save(folder / "plain.bmp", "BMP")
    Image.fromarray(base[..., 0].astype(np.uint16) * 257).save(folder / "wide.tif", "TIFF")
    rgb.save(folder / "anim.gif", "GIF", save_all=True, append_images=[rgb.rotate(90)])


def test_mixed_formats_and_modes_in_one_image_folder_validate_cleanly(tmp_path: Path) -> None:
    save_variants(tmp_path / "car", seed=1)
    save_variants(tmp_path / "bus", seed=2)
    modes = {Image.open(path).mode for path in tmp_path.rglob("*.*")}
    assert {"P", "CMYK", "I;16", "RGB"} <= modes

    result = validate_dataset(load_dataset(tmp_path))

    assert result.problems.empty, result.problems.to_string()
    assert len(result.frame) == 12
    assert (result.frame["file"] == "ok").all()
