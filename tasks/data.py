"""Loading the two dataset layouts users already have into one manifest frame.

A manifest has an absolute ``image`` path per row, one column per attribute and, when
the user supplied one, a ``split`` column that is then respected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MANIFEST_NAME = "labels.csv"
IMAGE_COLUMN = "image"
SPLIT_COLUMN = "split"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset.

    Attributes:
        root: the folder image paths were resolved against.
        frame: one row per image: ``image`` (absolute path), attributes, optional ``split``.
        attributes: the label columns, in manifest order.
    """

    root: Path
    frame: pd.DataFrame
    attributes: list[str]

    @property
    def has_split(self) -> bool:
        return SPLIT_COLUMN in self.frame.columns


def load_dataset(path: Path | str, attribute: str = "label") -> Dataset:
    """Loads a CSV manifest (a ``.csv`` file or a folder holding ``labels.csv``) or an ImageFolder.

    Args:
        path: the CSV file or the dataset folder.
        attribute: the label column name for an ImageFolder (one folder per class).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the manifest lacks an ``image`` column or any attribute column.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.is_file():
        return load_manifest(path)
    if (path / MANIFEST_NAME).is_file():
        return load_manifest(path / MANIFEST_NAME)
    return load_image_folder(path, attribute)


def load_manifest(csv_path: Path) -> Dataset:
    """Reads a CSV manifest; image paths are relative to the CSV's folder unless absolute."""
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.columns = [c.strip() for c in frame.columns]
    if IMAGE_COLUMN not in frame.columns:
        raise ValueError(f"{csv_path}: the manifest needs an '{IMAGE_COLUMN}' column; found {list(frame.columns)}")
    attributes = [c for c in frame.columns if c not in (IMAGE_COLUMN, SPLIT_COLUMN)]
    if not attributes:
        raise ValueError(f"{csv_path}: the manifest needs at least one label column besides 'image' and 'split'")
    root = csv_path.parent
    frame[IMAGE_COLUMN] = [_resolve(root, p) for p in frame[IMAGE_COLUMN]]
    if SPLIT_COLUMN in frame.columns:
        frame[SPLIT_COLUMN] = frame[SPLIT_COLUMN].str.strip().str.lower()
    return Dataset(root=root, frame=frame.reset_index(drop=True), attributes=attributes)


def load_image_folder(root: Path, attribute: str = "label") -> Dataset:
    """Reads ``root/<class>/<image>``: one attribute whose classes are the folder names."""
    rows = [
        {IMAGE_COLUMN: str(file), attribute: class_dir.name}
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for file in sorted(class_dir.rglob("*"))
        if file.is_file() and not _hidden(file.relative_to(class_dir))
    ]
    if not rows:
        raise ValueError(f"{root}: no '{MANIFEST_NAME}' and no class folders with files (expected root/<class>/<image>)")
    return Dataset(root=root, frame=pd.DataFrame(rows), attributes=[attribute])


def _hidden(relative: Path) -> bool:
    """True for dot-files and anything under a dot-folder (``.ipynb_checkpoints``, ``.thumbnails``)."""
    return any(part.startswith(".") for part in relative.parts)


def _resolve(root: Path, image: str) -> str:
    image = image.strip()
    if not image:
        return ""
    candidate = Path(image)
    return str(candidate if candidate.is_absolute() else (root / candidate).resolve())
