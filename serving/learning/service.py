"""The learning loop in serving: receipts and samples after each answer, feedback, the review queue.

After an answer is built, ``answered`` decides in microseconds which images to keep (no I/O)
and hands the rest to one background task: claim each image's receipt, then queue the kept
images for the review writer thread. The client never waits for either. Feedback and reviews
go through the same writer thread, so a label always finds its kept item written before it.

The label store is opened in the app's lifespan (opening creates its tables); while it cannot be
opened (a database still starting), nothing is kept and feedback answers 503, and each refresh
tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from feedback.images import ImageStore
from feedback.items import KeptItem, PredictionInfo, QueueItem
from feedback.retention import expire
from feedback.sampling import HOUR, SamplingPolicy
from feedback.store import LabelOutcome, LabelStore, ReviewOutcome
from serving.learning.metrics import LearningMetrics
from serving.learning.online import OnlineAccuracy
from serving.learning.receipts import Receipt, ReceiptBook
from serving.learning.sampler import Sampler
from serving.learning.writer import ReviewWriter
from serving.model.source import LoadedModel
from serving.monitoring.region_stats import RegionStats
from serving.settings import ServingSettings
from serving.storage.stores import ResilientStore
from vehicle_model.records import Prediction

logger = logging.getLogger("serving.learning")
EXPIRE_EVERY_SECONDS = 3600.0
FEEDBACK = "feedback"


class LabelStoreUnavailable(Exception):
    """The label store could not be opened yet; the message says why."""


class ReusedRequestId(Exception):
    """The request id of an answer also names an older answer kept for review."""


@dataclass(frozen=True)
class Answer:
    """One answered image, as a handler hands it over.

    Attributes:
        item_id: the request id, or ``<request id>:<index>`` for a batch item.
        prediction: what the model answered for it.
        image: the upload's bytes.
    """

    item_id: str
    prediction: Prediction
    image: bytes


class LearningLoop:
    """Receipts, sampling, feedback and the review queue of one app.

    Args:
        settings: the ``REVIEW_*``, ``FEEDBACK_WINDOW_SECONDS`` and ``LABELS_DATABASE_URL`` settings.
        receipt_store: the ``receipt`` namespace of the Redis-or-memory store.
        stats: the region stats, whose drift statuses say which regions are drifted.
        metrics: the learning loop's metrics.
        served_version: the version being served now (None before a model is loaded).
    """

    def __init__(
        self,
        settings: ServingSettings,
        receipt_store: ResilientStore,
        stats: RegionStats,
        metrics: LearningMetrics,
        served_version: Callable[[], str | None],
    ) -> None:
        self.settings = settings
        self.served_version = served_version
        window = settings.feedback_window_seconds
        self.receipts = ReceiptBook(receipt_store, window) if window > 0 else None
        policy = SamplingPolicy(
            uniform_share=settings.review_uniform_share,
            uncertain_share=settings.review_uncertain_share,
            drifted_share=settings.review_drifted_share,
            max_per_hour=settings.review_max_per_hour,
            max_total=settings.review_max_total,
        )
        self.sampler = Sampler(policy, settings.review_sampling)
        self.stats = stats
        self.metrics = metrics
        self.writer = ReviewWriter(
            int(settings.review_queue_max_mb * 2**20), on_failure=metrics.not_kept.labels("write_failed").inc
        )
        self.online = OnlineAccuracy(metrics, settings.review_refresh_seconds)
        self.labels: LabelStore | None = None
        self.images: ImageStore | None = None
        self.problem: str | None = "not started"
        self._classes: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._settling: dict[str, asyncio.Task] = {}
        self._refresher: asyncio.Task | None = None
        self._expired_at = float("-inf")

    async def start(self) -> None:
        await self._open()
        self._refresher = asyncio.create_task(self._keep_refreshing(), name="learning-refresh")

    async def stop(self) -> None:
        """Claims the receipts and writes the samples already accepted, then closes the store."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await asyncio.gather(*list(self._settling.values()))
        await self.writer.close()
        if self.labels is not None:
            self.labels.close()

    async def _open(self) -> None:
        if self.labels is not None:
            return
        try:
            images = ImageStore(self.settings.review_images_url)
            labels = await asyncio.to_thread(LabelStore, self.settings.labels_database_url)
        except Exception as exc:  # any driver's error: the loop waits for the store, serving goes on
            self.problem = f"the label store cannot be opened: {type(exc).__name__}: {exc}"
            logger.warning("%s; retrying every %.0f s", self.problem, self.settings.review_refresh_seconds)
            return
        self.labels, self.images, self.problem = labels, images, None

    def require(self) -> LabelStore:
        """The open label store.

        Raises:
            LabelStoreUnavailable: it could not be opened yet.
        """
        if self.labels is None:
            raise LabelStoreUnavailable(self.problem or "the label store is not open")
        return self.labels

    # -- after each answer ------------------------------------------------------------------

    def answered(self, client: str, region: str, model: LoadedModel, answers: Sequence[Answer]) -> None:
        """Decides what to keep and schedules the receipts and samples; no I/O, returns at once."""
        if not answers or (self.receipts is None and not self.sampler.enabled):
            return
        now = time.time()
        classes = self._classes_of(model)
        work = []
        for answer in answers:
            reasons, capped = self.sampler.choose(answer.prediction, region) if self.labels else ((), None)
            if capped is not None:
                self.metrics.not_kept.labels(capped).inc()
            receipt = Receipt(
                answer.item_id,
                client,
                region,
                model.name,
                model.version,
                now,
                _summary(answer.prediction),
                classes,
                kept=bool(reasons),
                uniform="uniform" in reasons,
            )
            work.append((receipt, reasons, answer))
        if self.receipts is None and not any(reasons for _, reasons, _ in work):
            return
        task = asyncio.create_task(self._settle(work), name="learning-settle")
        ids = [receipt.item_id for receipt, _, _ in work]
        self._settling.update(dict.fromkeys(ids, task))
        task.add_done_callback(lambda done: self._settled(ids, done))

    def _settled(self, ids: list[str], task: asyncio.Task) -> None:
        for item_id in ids:
            if self._settling.get(item_id) is task:
                del self._settling[item_id]

    async def _settle(self, work: list[tuple[Receipt, tuple[str, ...], Answer]]) -> None:
        for receipt, reasons, answer in work:
            try:
                if self.receipts is not None and not await self.receipts.claim(receipt):
                    # The id was answered before (a reused request id): the first answer owns it.
                    if reasons:
                        self.metrics.not_kept.labels("id_taken").inc()
                    continue
                if reasons and not self.writer.keep(len(answer.image), partial(self._keep, receipt, reasons, answer)):
                    self.metrics.not_kept.labels("queue_full").inc()
                    if self.receipts is not None:
                        await self.receipts.amend(dataclasses.replace(receipt, kept=False))
            except Exception:  # one bad receipt must not stop the others
                logger.exception("settling the receipt of %s failed", receipt.item_id)

    def _keep(self, receipt: Receipt, reasons: tuple[str, ...], answer: Answer) -> None:
        """On the writer thread: the image, then its item."""
        assert self.labels is not None and self.images is not None
        if self.labels.item(receipt.item_id) is not None:
            # The id was kept before, by an answer whose receipt has expired since: that one stays.
            self.metrics.not_kept.labels("id_taken").inc()
            return
        item = KeptItem.from_prediction(
            receipt.item_id,
            answer.prediction,
            time=receipt.time,
            region=receipt.region,
            client=receipt.client,
            model=receipt.model,
            version=receipt.version,
            reasons=reasons,
            image_sha=self.images.put(answer.image),
        )
        if self.labels.add_item(item):
            for reason in reasons:
                self.metrics.kept.labels(reason).inc()

    def _classes_of(self, model: LoadedModel) -> dict[str, list[str]]:
        key = (model.name, model.version)
        if key not in self._classes:
            self._classes[key] = model.classifier.classes()
        return self._classes[key]

    # -- feedback -----------------------------------------------------------------------------

    async def receipt(self, item_id: str, client: str) -> Receipt | None:
        """The receipt of ``client``'s answer ``item_id``; None when unknown, expired or another's.

        Waits for the receipt of an answer given a moment ago to be claimed first.

        Raises:
            RedisUnavailable: memory does not hold it and Redis could not be asked.
        """
        settling = self._settling.get(item_id)
        if settling is not None:
            await asyncio.shield(settling)
        if self.receipts is None:
            return None
        return await self.receipts.find(item_id, client)

    async def give_feedback(self, receipt: Receipt, labels: dict[str, str], replace: bool) -> LabelOutcome:
        """Stores the client's labels for the answer of ``receipt`` (already checked against its classes).

        Raises:
            LabelStoreUnavailable: the label store is not open.
            ReusedRequestId: the id names an older kept answer (the receipt of which has expired).
        """
        store = self.require()
        info = PredictionInfo(
            receipt.time,
            receipt.region,
            receipt.client,
            receipt.model,
            receipt.version,
            {attribute: str(result["label"]) for attribute, result in receipt.predictions.items()},
            kept=receipt.kept,
            uniform=receipt.uniform,
        )
        outcome = await self.writer.run(partial(_add_feedback, store, receipt, labels, replace, info))
        self._counted(FEEDBACK, outcome)
        return outcome

    # -- review -------------------------------------------------------------------------------

    async def queue(self, region: str | None, limit: int) -> list[QueueItem]:
        """Items waiting for review: drifted regions first, then the lowest margin, then the oldest."""
        store = self.require()
        return await asyncio.to_thread(store.queue, region, self.sampler.drifted, limit)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Per region: kept, queued, rejected, labelled, harvested."""
        return await asyncio.to_thread(self.require().counts)

    async def image(self, item_id: str) -> bytes | None:
        """The kept image of ``item_id``; None when there is no such item or its image is gone."""
        store = self.require()
        item = await asyncio.to_thread(store.item, item_id)
        if item is None or self.images is None:
            return None
        try:
            return await asyncio.to_thread(self.images.get, item.image_sha)
        except FileNotFoundError:
            return None

    async def review(self, item_id: str, action: str, labels: dict[str, str] | None, reviewer: str) -> ReviewOutcome:
        """A reviewer's confirm, correct, skip or reject of a kept item (corrections replace).

        Raises:
            KeyError: no kept item ``item_id``.
            ValueError: an unknown attribute or class (the message names the allowed ones).
            LabelStoreUnavailable: the label store is not open.
        """
        store = self.require()
        outcome = await self.writer.run(
            partial(store.review, item_id, action, labels, reviewer=reviewer, replace=action == "correct")
        )
        self._counted("review", outcome)
        return outcome

    def _counted(self, source: str, outcome: str) -> None:
        self.metrics.labels.labels(source, outcome).inc()
        if outcome in ("created", "replaced", "rejected"):
            self.online.invalidate()

    # -- in the background ----------------------------------------------------------------------

    async def feedback_by_region(self, version: str | None) -> dict[str, dict]:
        """Region -> online accuracy block of ``version``; recomputed when stale, {} without a store."""
        if self.labels is not None and self.online.stale(version):
            started = time.monotonic()
            try:
                rows = await asyncio.to_thread(self.labels.labelled_rows)
            except Exception:  # the stats still answer, with the last numbers
                logger.exception("reading the labels for online accuracy failed")
            else:
                self.online.update(rows, version, started)
        return self.online.regions

    async def refresh(self, version: str | None) -> None:
        """Re-reads drifted regions, the store's counts and online accuracy; expires once an hour."""
        await self._open()
        if self.labels is None:
            return
        store = self.labels
        drift = await self.stats.drift()
        as_of = time.time()
        hour, total = await self.writer.run(lambda: (store.kept_count(since=as_of - HOUR), store.kept_count()))
        self.sampler.refresh((r for r, status in drift.items() if status.get("drift")), hour, total, as_of)
        for region, counts in (await self.counts()).items():
            self.metrics.queued.labels(region).set(counts["queued"])
        await self.feedback_by_region(version)
        if as_of - self._expired_at >= EXPIRE_EVERY_SECONDS and self.images is not None:
            images = self.images
            expired = await self.writer.run(lambda: expire(store, images, self.settings.review_retention_days))
            self._expired_at = as_of
            if expired.images_deleted:
                logger.info(
                    "retention: deleted %d kept images older than %.1f days",
                    expired.images_deleted,
                    self.settings.review_retention_days,
                )

    async def _keep_refreshing(self) -> None:
        while True:
            try:
                await self.refresh(self.served_version())
            except Exception:  # a failed read (Redis or the database away) is retried next time
                logger.exception("refreshing the learning loop's state failed")
            await asyncio.sleep(self.settings.review_refresh_seconds)


def _add_feedback(
    store: LabelStore, receipt: Receipt, labels: dict[str, str], replace: bool, info: PredictionInfo
) -> LabelOutcome:
    """On the writer thread: the label, unless the id's kept item is another answer's."""
    item = store.item(receipt.item_id)
    if item is not None and (item.client != receipt.client or abs(item.time - receipt.time) > 1e-3):
        raise ReusedRequestId(receipt.item_id)
    return store.add_label(receipt.item_id, labels, FEEDBACK, client=receipt.client, replace=replace, prediction=info)


def _summary(prediction: Prediction) -> dict[str, dict]:
    """What a receipt keeps of an answer: per attribute the label, its probability, its decision."""
    return {
        attribute: {
            "label": str(result["label"]),
            "probability": round(float(max(result["probabilities"].values())), 5),
            **({"decision": str(result["decision"])} if "decision" in result else {}),
        }
        for attribute, result in prediction.items()
    }


def batch_answers(request_id: str, images: Sequence[bytes], predictions: Sequence[Prediction | None]) -> list[Answer]:
    """The answered images of a batch request, as ``<request id>:<index>`` (rejected files have none)."""
    return [
        Answer(f"{request_id}:{index}", prediction, image)
        for index, (image, prediction) in enumerate(zip(images, predictions, strict=True))
        if prediction is not None
    ]
