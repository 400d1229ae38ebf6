"""Flow: check a new labelled batch against the training data root and add it, or refuse it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from flows.settings import get_settings
from tasks.data.dataset_steps import SYNTHETIC
from tasks.data.ingest import BatchCheck, add_batch, batch_name, check_batch
from tasks.data.validation import DataValidationError, ValidationConfig, problems_markdown


class BatchRejected(DataValidationError):
    """The batch failed validation; the root was not changed. ``problems`` is the table."""

    def __init__(self, message: str, problems: pd.DataFrame) -> None:
        super().__init__(message)
        self.problems = problems

    def __reduce__(self):  # Prefect may pickle a flow's exception; keep the table with it
        return (type(self), (str(self), self.problems))


@dataclass(frozen=True)
class IngestedBatch:
    path: str
    images: int
    root_images: int
    attributes: list[str]


@task(name="check-batch")
def check_batch_task(source: str, root: Path, min_per_class: int, attribute: str) -> BatchCheck:
    """Checks the batch against the root; a refusal is published as the ``ingest-validation`` table."""
    check = check_batch(source, root, ValidationConfig(min_per_class=min_per_class), attribute)
    if not check.ok:
        create_markdown_artifact(
            key="ingest-validation",
            markdown=f"# Batch refused: {len(check.problems)} problems; {root} unchanged\n\n"
            f"{problems_markdown(check.problems)}",
            description=f"Problems in {source}",
        )
    return check


@task(name="add-batch")
def add_batch_task(check: BatchCheck, root: Path, source: str) -> Path:
    target = add_batch(check, root, batch_name(source))
    create_markdown_artifact(
        key="ingested-batch",
        markdown=f"# Added {len(check.batch)} images as `{target.name}`\n\n"
        f"- root: {root} ({check.existing + len(check.batch)} images now)\n",
        description=f"Batch from {source}",
    )
    return target


@flow(name="ingest-batch")
def ingest_batch(
    source: str, into: str | None = None, min_per_class: int = 5, attribute: str = "label"
) -> IngestedBatch | State:
    """Validates a labelled batch with the training checks, against the root's images too, and adds
    it to the root atomically; a refused batch changes nothing.

    Args:
        source: the batch: a CSV manifest, a folder with labels.csv, or an ImageFolder.
        into: the training data root; the ``PIPELINE_TRAINING_DATA`` setting when empty.
        min_per_class: fewest images any class may have in the root with this batch.
        attribute: the label name of an ImageFolder batch (the root's, when it has one).
    """
    into = into or get_settings().training_data
    if not into or into == SYNTHETIC:
        raise ValueError("no training data root: pass `into` (--into ROOT) or set PIPELINE_TRAINING_DATA")
    root = Path(into).expanduser().resolve()
    check = check_batch_task(source, root, min_per_class, attribute)
    if not check.ok:
        # A refusal is an outcome, not a crash: the run ends Failed with the table, and no traceback.
        message = f"{len(check.problems)} problems in {source}; {root} was not changed"
        return Failed(message=message, data=BatchRejected(message, check.problems))
    target = add_batch_task(check, root, source)
    get_run_logger().info("Added %d images from %s as %s", len(check.batch), source, target)
    return IngestedBatch(str(target), len(check.batch), check.existing + len(check.batch), check.attributes)
