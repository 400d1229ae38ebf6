"""Thin Prefect tasks over ``tasks.data.ingest``: names, artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.data.ingest import BatchCheck, add_batch, batch_name, check_batch
from tasks.data.validation import ValidationConfig, problems_markdown


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
    """Adds the checked batch to the root under a name saying when and whence; publishes ``ingested-batch``."""
    target = add_batch(check, root, batch_name(source))
    create_markdown_artifact(
        key="ingested-batch",
        markdown=f"# Added {len(check.batch)} images as `{target.name}`\n\n"
        f"- root: {root} ({check.existing + len(check.batch)} images now)\n",
        description=f"Batch from {source}",
    )
    return target
