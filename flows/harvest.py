"""Flow: expire what is past the retention window → reviewed labels → one batch through
``ingest``'s checks → the training data root → the labels marked harvested."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow
from prefect.states import Failed, State

from flows.settings import get_settings
from tasks.data.dataset_steps import SYNTHETIC
from tasks.data.harvest import Harvest, name_items, per_region
from tasks.data.harvest_steps import (
    expire_task,
    harvestable_task,
    mark_harvested_task,
    report_harvest_task,
    write_batch_task,
)
from tasks.data.ingest import BatchRejected
from tasks.data.ingest_steps import add_batch_task, check_batch_task
from tasks.registry.lock import exclusive

LOCK = "harvest-labels"  # a scheduled and an event-triggered run must not add the same labels twice
BATCH_FOLDER = "reviewed-labels"  # the batch is named <UTC time>-reviewed-labels in the root


@flow(name="harvest-labels")
def harvest_labels(into: str | None = None, min_labels: int = 1, min_per_class: int = 5) -> Harvest | State:
    """Adds the reviewed labels not harvested yet to the training data as one batch, checked by
    ``ingest`` like any batch; a refused batch adds nothing and marks nothing. Runs the retention
    window first, so kept images never outlive ``REVIEW_RETENTION_DAYS``.

    Args:
        into: the training data root; the ``PIPELINE_TRAINING_DATA`` setting when empty.
        min_labels: fewest harvestable labels worth a batch; fewer wait for the next run.
        min_per_class: fewest images any class may have in the root with this batch.
    """
    settings = get_settings()
    with exclusive(LOCK):
        expired = expire_task(settings.labels_database_url, settings.review_images_url, settings.review_retention_days)
        rows = harvestable_task(settings.labels_database_url)
        if not rows or len(rows) < min_labels:
            note = f"{len(rows)} reviewed labels are waiting; a batch needs {min_labels}" if rows else "none waiting"
            return report_harvest_task(Harvest("", expired_images=expired, note=note))
        root = _root(into or settings.training_data)
        with tempfile.TemporaryDirectory(prefix="harvest-") as tmp:
            batch = write_batch_task(rows, settings.review_images_url, Path(tmp) / BATCH_FOLDER, root)
            if not batch.item_ids:
                note = f"none of the {len(rows)} labels could be written"
                return report_harvest_task(Harvest(str(root), skipped=batch.skipped, expired_images=expired, note=note))
            check = check_batch_task(str(batch.folder), root, min_per_class, "label")
            if not check.ok:
                # As ingest: a refusal is an outcome, the run ends Failed with the table, nothing marked.
                message = f"{len(check.problems)} problems in the harvested labels; {root} was not changed"
                problems = name_items(check.problems, rows)
                report_harvest_task(Harvest(str(root), expired_images=expired, note=message), problems)
                return Failed(message=message, data=BatchRejected(message, problems))
            target = add_batch_task(check, root, str(batch.folder))
        marked = mark_harvested_task(settings.labels_database_url, batch.item_ids, target.name)
    harvest = Harvest(
        str(root), target.name, per_region(rows, marked), len(check.batch), batch.skipped, expired, note=""
    )
    return report_harvest_task(harvest)


def _root(into: str) -> Path:
    if not into or into == SYNTHETIC:
        raise ValueError("no training data root: pass `into` (--into ROOT) or set PIPELINE_TRAINING_DATA")
    return Path(into).expanduser().resolve()
