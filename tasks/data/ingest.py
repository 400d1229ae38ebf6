"""Adding a labelled batch to a training data root: checked against what is there, added atomically.

The root is a folder of batch folders (``tasks.data.dataset``). A new batch passes the same pandera
checks as training data, run over the root and the batch together so that the same image
content under other labels, or a class still too small, is caught; only the new batch's
rows are reported. A batch that passes is copied under a hidden name and renamed into place
(``tasks.data.atomic``), so a reader sees the root before or after the batch, never half of it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tasks.data.atomic import atomic_folder
from tasks.data.dataset import (
    IMAGE_COLUMN,
    MANIFEST_NAME,
    SPLIT_COLUMN,
    Dataset,
    is_batch_root,
    load_dataset,
    visible_children,
)
from tasks.data.validation import (
    REPORT_COLUMNS,
    SHA_COLUMN,
    DataValidationError,
    ValidationConfig,
    validate_dataset,
)


@dataclass(frozen=True)
class BatchCheck:
    """A batch checked against a root.

    Attributes:
        batch: the batch's validated rows (with ``sha256``).
        attributes: the label columns.
        problems: one row per problem of the batch (``REPORT_COLUMNS``); empty when it may be added.
        existing: how many images the root already holds.
    """

    batch: pd.DataFrame
    attributes: list[str]
    problems: pd.DataFrame
    existing: int

    @property
    def ok(self) -> bool:
        return self.problems.empty


class BatchRejected(DataValidationError):
    """The batch failed validation; the root was not changed. ``problems`` is the table."""

    def __init__(self, message: str, problems: pd.DataFrame) -> None:
        super().__init__(message)
        self.problems = problems

    def __reduce__(self):  # Prefect may pickle a flow's exception; keep the table with it
        return (type(self), (str(self), self.problems))


@dataclass(frozen=True)
class IngestedBatch:
    """A batch added to a root.

    Attributes:
        path: the batch folder under the root.
        images: how many images the batch added.
        root_images: how many images the root holds with it.
        attributes: the label columns.
    """

    path: str
    images: int
    root_images: int
    attributes: list[str]


def root_problem(root: Path) -> str | None:
    """Why ``root`` cannot take batches (it is a single dataset or a file), or None."""
    if not root.exists():
        return None
    if not root.is_dir():
        return f"{root} is a file; the training data root must be a folder of batch folders"
    if visible_children(root) and not is_batch_root(root):
        return (
            f"{root} is a single dataset (labels.csv or class folders), not a root of batch folders; "
            f"move it into a batch folder (e.g. {root}/batch-0001/) first"
        )
    return None


def check_batch(source: Path | str, root: Path, config: ValidationConfig, attribute: str = "label") -> BatchCheck:
    """Validates ``source`` together with the images already under ``root``.

    An ImageFolder batch takes the root's label name when the root has exactly one attribute.

    Raises:
        FileNotFoundError, ValueError: ``source`` cannot be read as a dataset, or ``root`` cannot take batches.
    """
    problem = root_problem(root)
    if problem:
        raise ValueError(problem)
    existing = load_dataset(root) if root.exists() and visible_children(root) else None
    if existing is not None and len(existing.attributes) == 1:
        attribute = existing.attributes[0]
    batch = load_dataset(source, attribute)
    if existing is not None and set(existing.attributes) != set(batch.attributes):
        mismatch = pd.DataFrame(
            [
                {
                    "image": str(source),
                    "column": ",".join(batch.attributes),
                    "check": "same_attributes_as_root",
                    "value": f"the root labels {existing.attributes}",
                }
            ],
            columns=REPORT_COLUMNS,
        )
        return BatchCheck(batch.frame, batch.attributes, mismatch, len(existing.frame))
    old = existing.frame if existing is not None else pd.DataFrame(columns=batch.frame.columns)
    together = pd.concat([old, batch.frame], ignore_index=True)
    if SPLIT_COLUMN in together.columns:
        together[SPLIT_COLUMN] = together[SPLIT_COLUMN].fillna("")
    result = validate_dataset(Dataset(root, together, batch.attributes), config)
    new_rows = result.frame.iloc[len(old) :]
    problems = result.problems[
        result.problems["image"].isin(set(new_rows[IMAGE_COLUMN])) | result.problems["image"].str.startswith("class:")
    ]
    return BatchCheck(new_rows.reset_index(drop=True), batch.attributes, problems.reset_index(drop=True), len(old))


def batch_name(source: Path | str, now: datetime | None = None) -> str:
    """``<UTC time>-<source name>``: sorts by arrival, says where it came from."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).resolve().name).strip("-.") or "batch"
    return f"{stamp}-{slug}"


def add_batch(check: BatchCheck, root: Path, name: str) -> Path:
    """Copies the checked batch into ``root/name`` (images named by content) atomically.

    Raises:
        FileExistsError: a batch of that name is already there, or arrived while copying.
    """
    target = root / name
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    with atomic_folder(target, if_exists="fail") as staging:
        (staging / "images").mkdir()
        rows = []
        for row in check.batch.to_dict("records"):
            relative = f"images/{row[SHA_COLUMN]}{Path(row[IMAGE_COLUMN]).suffix.lower()}"
            if not (staging / relative).exists():
                shutil.copyfile(row[IMAGE_COLUMN], staging / relative)
            split = {SPLIT_COLUMN: row[SPLIT_COLUMN]} if row.get(SPLIT_COLUMN) else {}
            rows.append({IMAGE_COLUMN: relative, **{a: row[a] for a in check.attributes}, **split})
        pd.DataFrame(rows).to_csv(staging / MANIFEST_NAME, index=False)
    return target
