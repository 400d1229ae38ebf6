"""One low-priority thread that scores mirrored images with the shadow version.

``put`` never waits: a full queue refuses (the caller counts the drop), so a shadow that falls
behind costs pairs, never a client's time. The thread lowers its own scheduling priority (nice
``NICENESS`` on Linux): while client inference keeps the cores busy the scheduler runs the
shadow in what is left, and the queue bound decides what is dropped. It takes every image
waiting (up to ``batch_images``) in one call, so the heads' per-call cost is paid once per batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from functools import partial

from feedback.shadow import Pair
from serving.model.source import LoadedModel
from serving.shadow.metrics import ShadowMetrics
from serving.shadow.pairing import Mirrored, featurizer_version, on_features, on_images
from vehicle_model.images import ImageLimits

logger = logging.getLogger("serving.shadow")
NICENESS = 10  # added to the worker thread's nice; client inference keeps the process's own
GATHER_SECONDS = 0.1  # how long the worker waits for more images before scoring what it holds
_STOP = object()  # queued by ``close`` behind the work already accepted


class ShadowWorker:
    """A bounded queue of mirrored images and the thread that scores them.

    Args:
        shadow: the shadow version to score with now (None while none is loaded).
        limits: decoding limits, for a shadow that decodes the image itself.
        deliver: receives each scored batch's pairs (called on the worker thread).
        metrics: where images that give no pair are counted.
        queue_size: most images waiting.
        batch_images: most images scored in one call.
    """

    def __init__(
        self,
        shadow: Callable[[], LoadedModel | None],
        limits: ImageLimits,
        deliver: Callable[[list[Pair]], None],
        metrics: ShadowMetrics,
        queue_size: int,
        batch_images: int,
    ) -> None:
        self.shadow = shadow
        self.limits = limits
        self.deliver = deliver
        self.metrics = metrics
        self.batch_images = batch_images
        self._queue: queue.Queue[Mirrored | object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None

    def put(self, item: Mirrored) -> bool:
        """Queues ``item``; False, and nothing queued, when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._thread.start()

    async def close(self, timeout: float) -> None:
        """Scores what is queued, then stops the thread; gives up waiting after ``timeout`` s."""
        if self._thread is None:
            return
        await asyncio.to_thread(self._queue.put, _STOP)  # waits for room, never for long
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            logger.warning("the shadow did not finish its queue within %.0f s; the rest is lost", timeout)
        self._thread = None

    def _work(self) -> None:
        _lower_priority()
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[Mirrored] = [item]
            # Waits a little for more: the heads cost per call far more than per row, and a pair
            # is not late for anyone.
            gather_until = time.monotonic() + GATHER_SECONDS
            while len(batch) < self.batch_images:
                try:
                    more = self._queue.get(timeout=max(0.0, gather_until - time.monotonic()))
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)
            try:
                self._score(batch)
            except Exception:  # before any pair was delivered: the thread must go on for the next batch
                logger.exception("the shadow failed to take %d images", len(batch))
                self.metrics.dropped.labels("failed").inc(len(batch))

    def _score(self, batch: list[Mirrored]) -> None:
        shadow = self.shadow()
        if shadow is None:
            self.metrics.dropped.labels("no_shadow").inc(len(batch))
            return
        version = featurizer_version(shadow)
        shared = [item for item in batch if item.champion_featurizer == version]
        own = [item for item in batch if item.champion_featurizer != version and item.image is not None]
        if len(shared) + len(own) < len(batch):
            # Queued for a shadow that shared the champion's features; another one is loaded now.
            self.metrics.dropped.labels("no_shadow").inc(len(batch) - len(shared) - len(own))
        for items, score in ((shared, on_features), (own, partial(on_images, limits=self.limits))):
            if not items:
                continue
            try:
                self.deliver(score(shadow, items))
            except Exception:  # the shadow's failure is the shadow's: counted, never the client's
                logger.exception("the shadow (version %s) failed to score %d images", shadow.version, len(items))
                self.metrics.dropped.labels("failed").inc(len(items))


def _lower_priority() -> None:
    """Gives the calling thread a lower scheduling priority (Linux: a thread is a task of its own)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + NICENESS))
    except OSError as exc:
        logger.warning("could not lower the shadow thread's priority: %s", exc)
