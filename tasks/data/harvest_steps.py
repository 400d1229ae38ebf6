"""Prefect tasks of the harvest: the label store and the kept images in, a batch folder out.

Reading a store must not create it: a checkout where serving never kept anything has no
label database, and the harvest, the monitor and the retrain check then see no labels.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import SQLAlchemyError

from feedback.harvest import Batch, write_batch
from feedback.images import ImageStore
from feedback.items import HarvestRow
from feedback.retention import expire
from feedback.store import LabelStore
from tasks.data.harvest import Harvest, harvest_markdown, root_attributes


def existing_store(url: str) -> LabelStore | None:
    """The label store at ``url``; None for a SQLite file that does not exist yet."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        if not Path(parsed.database).expanduser().is_file():
            return None
    return LabelStore(url)


def review_backlog(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per region: kept images waiting for review, and reviewed labels not harvested yet.
    Empty when there is no store, or it cannot be read (a message is never worth failing a run)."""
    try:
        store = existing_store(url)
        if store is None:
            return {}, {}
        try:
            counts, harvestable = store.counts(), store.harvestable()
        finally:
            store.close()
    except (SQLAlchemyError, OSError):
        return {}, {}
    waiting = {region: c["queued"] for region, c in counts.items() if c["queued"]}
    return waiting, dict(sorted(Counter(row.region for row in harvestable).items()))


@task(name="expire-kept-images", cache_policy=NO_CACHE)
def expire_task(labels_url: str, images_url: str, days: float) -> int:
    """Deletes kept images, items and labels older than the retention window; the images deleted."""
    store = existing_store(labels_url)
    if store is None:
        return 0
    try:
        expired = expire(store, ImageStore(images_url), days)
    finally:
        store.close()
    get_run_logger().info(
        "Retention (%s days): %d expired images deleted (%d already gone)",
        days,
        expired.images_deleted,
        expired.images_missing,
    )
    return expired.images_deleted


@task(name="read-harvestable-labels", cache_policy=NO_CACHE)
def harvestable_task(labels_url: str) -> list[HarvestRow]:
    """Labels that can become training examples and were not harvested yet."""
    store = existing_store(labels_url)
    if store is None:
        get_run_logger().info("No label store at %s: nothing was kept or labelled yet", labels_url)
        return []
    try:
        rows = store.harvestable()
    finally:
        store.close()
    get_run_logger().info("%d labels are ready to harvest", len(rows))
    return rows


@task(name="write-label-batch", cache_policy=NO_CACHE)
def write_batch_task(rows: list[HarvestRow], images_url: str, folder: Path, root: Path) -> Batch:
    """The labels and their kept images as one batch folder, labelling the root's attributes."""
    batch = write_batch(rows, ImageStore(images_url), folder, root_attributes(root))
    logger = get_run_logger()
    logger.info("Wrote %d labels into %s", len(batch.item_ids), folder)
    for item_id, why in batch.skipped.items():
        logger.warning("Left out %s: %s", item_id, why)
    return batch


@task(name="mark-harvested", cache_policy=NO_CACHE)
def mark_harvested_task(labels_url: str, item_ids: list[str], batch: str) -> list[str]:
    """Records that these labels went into ``batch``, so none is harvested twice."""
    store = LabelStore(labels_url)
    try:
        marked = store.mark_harvested(item_ids, batch)
    finally:
        store.close()
    if len(marked) != len(set(item_ids)):
        get_run_logger().warning("%d labels were marked harvested by another run", len(set(item_ids)) - len(marked))
    return marked


@task(name="report-harvest", cache_policy=NO_CACHE)
def report_harvest_task(harvest: Harvest, problems: pd.DataFrame | None = None) -> Harvest:
    """Publishes the ``harvest`` artifact: what went in per region, what was left out, and the
    problems of a refused batch."""
    markdown = harvest_markdown(harvest, problems)
    create_markdown_artifact(key="harvest", markdown=markdown, description="Labels harvested")
    if harvest.batch:
        regions = ", ".join(f"{region} {n}" for region, n in harvest.regions.items())
        get_run_logger().info("Harvested %d labels as %s (%s)", harvest.labels, harvest.batch, regions)
    else:
        get_run_logger().info("No labels harvested: %s", harvest.note)
    return harvest
