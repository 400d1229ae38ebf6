"""Flow: check a new labelled batch against the training data root and add it, or refuse it."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.states import Failed, State

from flows.settings import get_settings
from tasks.data.dataset_steps import SYNTHETIC
from tasks.data.ingest import BatchRejected, IngestedBatch
from tasks.data.ingest_steps import add_batch_task, check_batch_task


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
