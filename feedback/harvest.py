"""Harvestable labels as one batch folder in the dataset format, for ``ingest`` to add.

The folder is a CSV-manifest dataset (``tasks.data.dataset``): ``images/<sha256>.<ext>`` and
``labels.csv`` with an ``image`` column (relative path) and one column per attribute, no
``split`` (splits follow from content hashes). ``ingest`` then checks it against the training
root and adds it whole or not at all; this module only writes what it was given, so it does
not import ``tasks`` (which sits above it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from feedback.items import HarvestRow
from vehicle_model.images import ACCEPTED_FORMATS

if TYPE_CHECKING:
    from feedback.images import ImageStore

MANIFEST = "labels.csv"  # tasks.data.dataset.MANIFEST_NAME
IMAGE_COLUMN = "image"  # tasks.data.dataset.IMAGE_COLUMN
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}


@dataclass(frozen=True)
class Batch:
    """What ``write_batch`` wrote.

    Attributes:
        folder: the batch folder (absent when nothing was written).
        item_ids: the items whose labels it holds: mark these harvested once it is ingested.
        skipped: item_id -> why it was left out (it stays harvestable).
        attributes: the label columns.
    """

    folder: Path
    item_ids: list[str]
    attributes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def write_batch(
    rows: Iterable[HarvestRow], images: ImageStore, folder: Path | str, attributes: Sequence[str] | None = None
) -> Batch:
    """Writes the rows' images and ``labels.csv`` into ``folder`` (the manifest last).

    Args:
        rows: labels to harvest (``LabelStore.harvestable``).
        images: where their images are kept.
        folder: a new or empty folder.
        attributes: the label columns; by default those of the first row. Rows labelling other
            attributes are skipped.

    Raises:
        FileExistsError: ``folder`` holds files already.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; a harvest writes a new batch folder")
    rows = list(rows)
    columns = list(attributes) if attributes is not None else (list(rows[0].labels) if rows else [])
    chosen, skipped = _one_label_per_image(rows, columns)
    written: dict[str, str] = {}  # sha -> relative path
    item_ids = []
    for row in chosen:
        if row.image_sha not in written:
            relative = _copy_image(row.image_sha, images, folder)
            if relative is None:
                skipped[row.item_id] = f"image {row.image_sha} is not there (expired?) or not a recognised image"
                continue
            written[row.image_sha] = relative
        item_ids.append(row.item_id)
    if item_ids:
        _write_manifest(folder, [r for r in chosen if r.item_id in set(item_ids)], written, columns)
    return Batch(folder, item_ids, columns, skipped)


def _one_label_per_image(rows: list[HarvestRow], columns: list[str]) -> tuple[list[HarvestRow], dict[str, str]]:
    """The rows that can go in: labels exactly ``columns``, and one set of labels per image."""
    skipped: dict[str, str] = {}
    by_image: dict[str, list[HarvestRow]] = {}
    for row in rows:
        if set(row.labels) != set(columns):
            skipped[row.item_id] = f"labels {sorted(row.labels)}; the batch labels {sorted(columns)}"
        else:
            by_image.setdefault(row.image_sha, []).append(row)
    chosen = []
    for same in by_image.values():
        if len({tuple(r.labels[c] for c in columns) for r in same}) > 1:
            ids = [r.item_id for r in same]
            skipped.update({r.item_id: f"the same image was labelled differently in {ids}" for r in same})
        else:
            chosen.extend(same)
    return chosen, skipped


def _copy_image(sha: str, images: ImageStore, folder: Path) -> str | None:
    try:
        data = images.get(sha)
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            extension = EXTENSIONS.get(image.format or "", "")
    except (FileNotFoundError, UnidentifiedImageError):
        return None
    relative = f"images/{sha}{extension}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / relative).write_bytes(data)
    return relative


def _write_manifest(folder: Path, rows: list[HarvestRow], paths: dict[str, str], columns: list[str]) -> None:
    seen: set[str] = set()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([IMAGE_COLUMN, *columns])
    for row in rows:
        if row.image_sha not in seen:  # the same image from two requests is one example
            seen.add(row.image_sha)
            writer.writerow([paths[row.image_sha], *(row.labels[c] for c in columns)])
    (folder / MANIFEST).write_text(buffer.getvalue())
