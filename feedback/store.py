"""Kept items and their labels in SQL (an adapter: SQLAlchemy Core on SQLite or PostgreSQL).

Two tables, created on first use. ``review_items`` holds the predictions kept for review and
their review state (skipped, rejected). ``review_labels`` holds one label per prediction,
copied with what the model answered, the version, region and client, and whether the image
was kept and in the uniform sample, so online accuracy needs the labels alone and labels of
predictions whose image was not kept count as well.

Several processes (serving replicas, the worker, the CLI) share one database. Every write is
one transaction, and inserts are ``INSERT ... ON CONFLICT DO NOTHING`` on the primary key, so
the same item or label arriving twice, from two processes at once, is stored once and the
second writer learns what is there.
"""

from __future__ import annotations

import time as clock
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from feedback.items import SOURCES, HarvestRow, KeptItem, LabelRow, PredictionInfo, QueueItem

LabelOutcome = Literal["created", "unchanged", "replaced", "conflict"]
ReviewAction = Literal["confirm", "correct", "skip", "reject"]
ReviewOutcome = Literal["created", "unchanged", "replaced", "conflict", "skipped", "rejected"]
REVIEW_ACTIONS: tuple[ReviewAction, ...] = ("confirm", "correct", "skip", "reject")
CREATE_LOCK = 7_021_021  # PostgreSQL advisory lock key: one process creates the tables
CHUNK = 500  # ids per IN (...) list, well under SQLite's bound variable limit

METADATA = sa.MetaData()
ITEMS = sa.Table(
    "review_items",
    METADATA,
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("time", sa.Double, nullable=False, index=True),
    sa.Column("region", sa.Text, nullable=False, index=True),
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("predictions", sa.JSON, nullable=False),
    sa.Column("margins", sa.JSON, nullable=False),
    sa.Column("margin", sa.Double, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("image_sha", sa.Text, nullable=False, index=True),
    sa.Column("skipped_at", sa.Double),
    sa.Column("skipped_by", sa.Text),
    sa.Column("rejected_at", sa.Double),
    sa.Column("rejected_by", sa.Text),
)
LABELS = sa.Table(
    "review_labels",
    METADATA,
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("labelled_by", sa.Text, nullable=False),
    sa.Column("labelled_at", sa.Double, nullable=False, index=True),
    sa.Column("predicted", sa.JSON, nullable=False),
    sa.Column("predicted_at", sa.Double, nullable=False, index=True),
    sa.Column("region", sa.Text, nullable=False, index=True),
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("kept", sa.Boolean, nullable=False),
    sa.Column("uniform", sa.Boolean, nullable=False),
    sa.Column("harvested_batch", sa.Text),
    sa.Column("harvested_at", sa.Double),
)


def create_engine(url: str) -> sa.Engine:
    """An engine for a ``sqlite:///`` or ``postgresql://`` URL (``postgresql://`` means psycopg 3).

    SQLite: the file's folder is created, writers wait up to 30 s for each other, and every
    transaction starts with ``BEGIN IMMEDIATE`` so one that reads before it writes cannot
    fail with "database is locked" when another process wrote in between.

    Raises:
        ValueError: the URL is for another database.
    """
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    if backend != "sqlite":
        raise ValueError(f"LABELS_DATABASE_URL must be a sqlite:/// or postgresql:// URL; got {backend}://")
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _connect(connection, _record) -> None:
        connection.isolation_level = None  # the driver's own BEGIN would come too late
        connection.execute("PRAGMA journal_mode=WAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class LabelStore:
    """Kept items, their labels and their review state, shared by every process of the loop.

    Guarantee: each method is one transaction; adding an item or a label is idempotent and
    safe to race, and a label never changes unless the caller asks to replace it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two replicas starting together would both try CREATE TABLE; one waits here.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK})
            METADATA.create_all(conn)

    def close(self) -> None:
        self.engine.dispose()

    def _inserted(self, conn: sa.Connection, table: sa.Table, row: dict) -> bool:
        """Inserts ``row`` unless its id is there; whether it was inserted (told by RETURNING,
        since psycopg reports no row count for ``ON CONFLICT DO NOTHING``)."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(table).values(row).on_conflict_do_nothing(index_elements=["item_id"])
        return conn.execute(insert.returning(table.c.item_id)).first() is not None

    def add_item(self, item: KeptItem) -> bool:
        """Stores a kept prediction; False when an item with its id is already there."""
        row = {
            "item_id": item.item_id,
            "time": item.time,
            "region": item.region,
            "client": item.client,
            "model": item.model,
            "version": item.version,
            "predictions": item.predictions,
            "margins": item.margin,
            "margin": item.min_margin,
            "reasons": ",".join(item.reasons),
            "image_sha": item.image_sha,
        }
        with self.engine.begin() as conn:
            return self._inserted(conn, ITEMS, row)

    def item(self, item_id: str) -> QueueItem | None:
        """The kept item ``item_id`` (with its skipped flag), or None."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(ITEMS).where(ITEMS.c.item_id == item_id)).first()
        return None if row is None else _queue_item(row)

    def label(self, item_id: str) -> LabelRow | None:
        """The label of ``item_id``, or None."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(LABELS).where(LABELS.c.item_id == item_id)).first()
        return None if row is None else _label_row(row)

    def add_label(
        self,
        item_id: str,
        labels: Mapping[str, str],
        source: str,
        *,
        client: str,
        replace: bool = False,
        prediction: PredictionInfo | None = None,
    ) -> LabelOutcome:
        """Stores a label for a prediction.

        The prediction is the kept item ``item_id`` when there is one, else ``prediction``.

        Args:
            item_id: the prediction's id.
            labels: attribute -> label (feedback may give only some attributes).
            source: ``feedback`` or ``review``.
            client: who gives the label (the client, or the reviewer).
            replace: replace a different label already given.
            prediction: what was predicted, for a prediction whose item is not stored.

        Returns:
            ``created``; ``unchanged`` when the same labels were there; ``conflict`` when other
            labels were there and ``replace`` is false; ``replaced`` when they were replaced.

        Raises:
            KeyError: no item ``item_id`` and no ``prediction``.
            ValueError: ``labels`` is empty or ``source`` unknown.
        """
        with self.engine.begin() as conn:
            return self._add_label(conn, item_id, dict(labels), source, client, replace, prediction)

    def _add_label(
        self,
        conn: sa.Connection,
        item_id: str,
        labels: dict[str, str],
        source: str,
        client: str,
        replace: bool,
        prediction: PredictionInfo | None,
    ) -> LabelOutcome:
        if not labels:
            raise ValueError("a label needs at least one attribute")
        if source not in SOURCES:
            raise ValueError(f"unknown label source {source!r}; expected one of {list(SOURCES)}")
        item = conn.execute(sa.select(ITEMS).where(ITEMS.c.item_id == item_id)).first()
        if item is None and prediction is None:
            raise KeyError(item_id)
        info = _info(_queue_item(item)) if item is not None else prediction
        now = clock.time()
        given = {"labels": labels, "source": source, "labelled_by": client, "labelled_at": now}
        row = {
            "item_id": item_id,
            **given,
            "predicted": info.labels,
            "predicted_at": info.time,
            "region": info.region,
            "client": info.client,
            "model": info.model,
            "version": info.version,
            "kept": info.kept,
            "uniform": info.uniform,
        }
        if self._inserted(conn, LABELS, row):
            return "created"
        there = conn.execute(sa.select(LABELS.c.labels).where(LABELS.c.item_id == item_id)).scalar_one()
        if there == labels:
            return "unchanged"
        if not replace:
            return "conflict"
        conn.execute(sa.update(LABELS).where(LABELS.c.item_id == item_id).values(given))
        return "replaced"

    def review(
        self,
        item_id: str,
        action: str,
        labels: Mapping[str, str] | None = None,
        *,
        reviewer: str = "reviewer",
        replace: bool = False,
    ) -> ReviewOutcome:
        """A reviewer's decision on a kept item.

        - ``confirm``: the model's answer becomes the label.
        - ``correct``: ``labels`` become the label; attributes left out keep the model's answer,
          which the reviewer saw pre-filled.
        - ``skip``: stays queued, after every item not skipped.
        - ``reject``: not a vehicle or unusable: leaves the queue, never harvested, not scored.

        Confirming or correcting a rejected item takes the rejection back.

        Returns:
            The label's outcome (as ``add_label``) for confirm and correct; ``skipped``, ``rejected``.

        Raises:
            KeyError: no kept item ``item_id``.
            ValueError: an unknown action, or a correction naming an attribute or class the
                model does not know (the message lists the allowed ones).
        """
        if action not in REVIEW_ACTIONS:
            raise ValueError(f"unknown review action {action!r}; expected one of {list(REVIEW_ACTIONS)}")
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(ITEMS).where(ITEMS.c.item_id == item_id)).first()
            if row is None:
                raise KeyError(item_id)
            item = _queue_item(row)
            where = sa.update(ITEMS).where(ITEMS.c.item_id == item_id)
            if action == "skip":
                conn.execute(where.values(skipped_at=clock.time(), skipped_by=reviewer))
                return "skipped"
            if action == "reject":
                conn.execute(where.values(rejected_at=clock.time(), rejected_by=reviewer))
                return "rejected"
            given = {**item.labels, **_checked(item, labels or {})} if action == "correct" else item.labels
            outcome = self._add_label(conn, item_id, given, "review", reviewer, replace, None)
            if outcome != "conflict":
                conn.execute(where.values(rejected_at=None, rejected_by=None))
            return outcome

    def queue(
        self, region: str | None = None, drifted_regions: Iterable[str] = frozenset(), limit: int = 50
    ) -> list[QueueItem]:
        """Kept items without a label and not rejected: drifted regions first, then the lowest
        margin, then the oldest; skipped items after all others, least recently skipped first."""
        drifted = set(drifted_regions)
        in_drift = ITEMS.c.region.in_(sorted(drifted)) if drifted else sa.false()
        query = (
            sa.select(ITEMS)
            .outerjoin(LABELS, LABELS.c.item_id == ITEMS.c.item_id)
            .where(LABELS.c.item_id.is_(None), ITEMS.c.rejected_at.is_(None))
            .order_by(
                sa.case((ITEMS.c.skipped_at.is_(None), 0), else_=1),
                ITEMS.c.skipped_at,
                sa.case((in_drift, 0), else_=1),
                ITEMS.c.margin,
                ITEMS.c.time,
                ITEMS.c.item_id,
            )
            .limit(limit)
        )
        if region is not None:
            query = query.where(ITEMS.c.region == region)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        return [_queue_item(row, drifted) for row in rows]

    def harvestable(self, limit: int | None = None) -> list[HarvestRow]:
        """Labels that can become training examples, oldest label first: the image was kept,
        the item is not rejected, every attribute the model predicts is labelled, and it was
        not harvested yet. A partly labelled item still counts for online accuracy."""
        query = (
            sa.select(LABELS, ITEMS.c.image_sha, ITEMS.c.predictions)
            .join(ITEMS, ITEMS.c.item_id == LABELS.c.item_id)
            .where(ITEMS.c.rejected_at.is_(None), LABELS.c.harvested_batch.is_(None))
            .order_by(LABELS.c.labelled_at, LABELS.c.item_id)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        complete = [
            HarvestRow(row.item_id, row.image_sha, row.labels, row.region, row.version, row.source)
            for row in rows
            if set(row.predictions) <= set(row.labels)
        ]
        return complete[:limit] if limit is not None else complete

    def mark_harvested(self, item_ids: Iterable[str], batch: str) -> list[str]:
        """Records that these labels went into training batch ``batch``; returns the ids marked
        now (an id already harvested, or unknown, is left as it is: each item is harvested once)."""
        ids = sorted(set(item_ids))
        marked: list[str] = []
        with self.engine.begin() as conn:
            for start in range(0, len(ids), CHUNK):
                update = (
                    sa.update(LABELS)
                    .where(LABELS.c.item_id.in_(ids[start : start + CHUNK]), LABELS.c.harvested_batch.is_(None))
                    .values(harvested_batch=batch, harvested_at=clock.time())
                    .returning(LABELS.c.item_id)
                )
                marked.extend(conn.execute(update).scalars())
        return sorted(marked)

    def labelled_rows(self, since: float | None = None) -> list[LabelRow]:
        """Every label (given at or after ``since``) except those of rejected items, for online accuracy."""
        query = (
            sa.select(LABELS)
            .outerjoin(ITEMS, ITEMS.c.item_id == LABELS.c.item_id)
            .where(ITEMS.c.rejected_at.is_(None))
            .order_by(LABELS.c.labelled_at, LABELS.c.item_id)
        )
        if since is not None:
            query = query.where(LABELS.c.labelled_at >= since)
        with self.engine.begin() as conn:
            return [_label_row(row) for row in conn.execute(query).all()]

    def expiring(self, older_than: float) -> list[str]:
        """The image shas ``expire(older_than)`` would leave unreferenced, deleting nothing: a
        caller that deletes these images first can repeat the whole expiry after a crash."""
        with self.engine.begin() as conn:
            return _freed(conn, older_than)

    def expire(self, older_than: float) -> list[str]:
        """Deletes the items and the labels of predictions made before ``older_than`` (Unix
        seconds); returns the image shas no remaining item refers to, for the caller to delete
        from the ``ImageStore``."""
        with self.engine.begin() as conn:
            freed = _freed(conn, older_than)
            old = ITEMS.c.time < older_than
            expired_items = sa.select(ITEMS.c.item_id).where(old)
            conn.execute(
                sa.delete(LABELS).where(sa.or_(LABELS.c.predicted_at < older_than, LABELS.c.item_id.in_(expired_items)))
            )
            conn.execute(sa.delete(ITEMS).where(old))
        return freed

    def kept_count(self, since: float | None = None) -> int:
        """How many items are held (kept at or after ``since``): what the sampling caps count."""
        query = sa.select(sa.func.count()).select_from(ITEMS)
        if since is not None:
            query = query.where(ITEMS.c.time >= since)
        with self.engine.begin() as conn:
            return conn.execute(query).scalar_one()

    def counts(self) -> dict[str, dict[str, int]]:
        """Per region: ``kept`` items, ``queued`` (awaiting review), ``rejected``, ``labelled``
        (labels, kept or not) and ``harvested`` (labels that went into training data)."""
        labelled = LABELS.c.item_id.is_not(None)
        items = sa.select(
            ITEMS.c.region,
            sa.func.count(),
            sa.func.count().filter(sa.and_(~labelled, ITEMS.c.rejected_at.is_(None))),
            sa.func.count().filter(ITEMS.c.rejected_at.is_not(None)),
        ).outerjoin(LABELS, LABELS.c.item_id == ITEMS.c.item_id)
        labels = sa.select(
            LABELS.c.region, sa.func.count(), sa.func.count().filter(LABELS.c.harvested_batch.is_not(None))
        )
        found: dict[str, dict[str, int]] = {}
        with self.engine.begin() as conn:
            for region, kept, queued, rejected in conn.execute(items.group_by(ITEMS.c.region)):
                found[region] = {"kept": kept, "queued": queued, "rejected": rejected, "labelled": 0, "harvested": 0}
            for region, n, harvested in conn.execute(labels.group_by(LABELS.c.region)):
                counts = found.setdefault(region, {"kept": 0, "queued": 0, "rejected": 0})
                counts.update(labelled=n, harvested=harvested)
        return dict(sorted(found.items()))


def _freed(conn: sa.Connection, older_than: float) -> list[str]:
    """Shas of items predicted before ``older_than`` that no later item shares."""
    old = ITEMS.c.time < older_than
    expiring = sa.select(ITEMS.c.image_sha).where(old)
    shared = sa.select(ITEMS.c.image_sha).where(~old, ITEMS.c.image_sha.in_(expiring))
    freed = sa.select(ITEMS.c.image_sha).where(old, ITEMS.c.image_sha.not_in(shared)).distinct()
    return sorted(conn.execute(freed).scalars())


def _queue_item(row: sa.Row, drifted: set[str] = frozenset()) -> QueueItem:
    return QueueItem(
        item_id=row.item_id,
        time=row.time,
        region=row.region,
        client=row.client,
        model=row.model,
        version=row.version,
        predictions=row.predictions,
        margin=row.margins,
        reasons=tuple(r for r in row.reasons.split(",") if r),
        image_sha=row.image_sha,
        drifted=row.region in drifted,
        skipped=row.skipped_at is not None,
    )


def _info(item: KeptItem) -> PredictionInfo:
    return PredictionInfo(
        item.time, item.region, item.client, item.model, item.version, item.labels, kept=True, uniform=item.uniform
    )


def _label_row(row: sa.Row) -> LabelRow:
    return LabelRow(
        item_id=row.item_id,
        labels=row.labels,
        source=row.source,
        labelled_by=row.labelled_by,
        labelled_at=row.labelled_at,
        predicted=row.predicted,
        predicted_at=row.predicted_at,
        region=row.region,
        client=row.client,
        model=row.model,
        version=row.version,
        kept=row.kept,
        uniform=row.uniform,
        harvested_batch=row.harvested_batch,
    )


def _checked(item: KeptItem, labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` if every attribute and class is one the model knows, else ValueError naming them."""
    classes = item.classes
    for attribute, label in labels.items():
        if attribute not in classes:
            raise ValueError(f"unknown attribute {attribute!r}; the model predicts {sorted(classes)}")
        if label not in classes[attribute]:
            raise ValueError(f"{attribute} {label!r} is not a class of this model; allowed: {classes[attribute]}")
    return dict(labels)
