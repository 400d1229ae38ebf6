"""Loading the dataset layouts into one manifest frame.

A dataset is a CSV manifest, an ImageFolder, or a *batch root*: a folder of batch folders,
each a CSV manifest or an ImageFolder, read together as one snapshot (``vehicles ingest``
adds batches). A manifest has an absolute ``image`` path per row, one column per attribute
and, when the user supplied one, a ``split`` column that is then respected.
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
    """Loads a CSV manifest (a ``.csv`` file or a folder holding ``labels.csv``), a batch root
    or an ImageFolder.

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
    if is_batch_root(path):
        return load_batches(path, attribute)
    return load_image_folder(path, attribute)


def visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def is_batch_root(folder: Path) -> bool:
    """A folder without ``labels.csv`` whose sub-folders are batches: each holds a
    ``labels.csv`` or only class folders (no image files of its own)."""
    if (folder / MANIFEST_NAME).exists():
        return False
    children = visible_children(folder)
    if not children or any(child.is_file() for child in children):
        return False
    return all(
        (child / MANIFEST_NAME).is_file()
        or (visible_children(child) and all(c.is_dir() for c in visible_children(child)))
        for child in children
    )


def load_batches(root: Path, attribute: str = "label") -> Dataset:
    """Reads every batch folder (sorted by name) as one dataset.

    Raises:
        ValueError: two batches label different attributes.
    """
    batches = [load_dataset(child, attribute) for child in visible_children(root)]
    attributes = batches[0].attributes
    for child, batch in zip(visible_children(root), batches):
        if set(batch.attributes) != set(attributes):
            raise ValueError(
                f"{root}: batch '{child.name}' labels {batch.attributes}, the first batch labels {attributes}"
            )
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    if SPLIT_COLUMN in frame.columns:
        frame[SPLIT_COLUMN] = frame[SPLIT_COLUMN].fillna("")
    return Dataset(root=root, frame=frame[[IMAGE_COLUMN, *attributes, *_split(frame)]], attributes=attributes)


def _split(frame: pd.DataFrame) -> list[str]:
    return [SPLIT_COLUMN] if SPLIT_COLUMN in frame.columns else []


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
        raise ValueError(
            f"{root}: no '{MANIFEST_NAME}' and no class folders with files (expected root/<class>/<image>)"
        )
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
