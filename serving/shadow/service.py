"""The shadow: the ``SHADOW_ALIAS`` version scores a share of the answered images, after the
answers are sent, and each (champion, shadow) pair goes to a Redis stream the report reads.

Clients never depend on it. ``answered`` runs in microseconds with no I/O and no waiting (a
random draw and a bounded queue); the scoring runs on one low-priority thread, the writing on a
background task; every failure on the way is logged and counted in
``vehicle_shadow_dropped_total``, never raised. The shadow version follows its alias with the
champion's rules (``ModelService``: polled, warmed, swapped; a version that fails to load leaves
the one before in place), and shares the champion's backbone when it can
(``serving.shadow.pairing``). Which backbone it may borrow depends on the champion, so when the
champion changes (a promotion: rare) the shadow is loaded once more and decides again.

Only images the champion ran now are mirrored: a cache hit has no features to share, and its
answer was mirrored, at the share's odds, when it was first computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from serving.learning.service import Answer
from serving.model.predictor import Classified
from serving.model.service import ModelService
from serving.model.source import LoadedModel, ModelSource
from serving.settings import ServingSettings
from serving.shadow.metrics import ShadowMetrics
from serving.shadow.pairing import Mirrored, borrow_backbone, featurizer_version
from serving.shadow.worker import ShadowWorker
from serving.shadow.writer import PairWriter
from serving.storage.stores import RedisGuard
from vehicle_model.images import ImageLimits

logger = logging.getLogger("serving.shadow")
WATCH_SECONDS = 1.0  # how often the champion is checked for a change
STOP_SECONDS = 10.0  # longest shutdown waits for the queued images to be scored


class Shadow:
    """The shadow version beside the champion, and the mirroring of answers to it.

    Args:
        settings: the ``SHADOW_*`` settings, and the registry and polling ones.
        champion: the champion's model service (the shadow borrows its backbone and follows the
            same registry model).
        guard: the shared Redis circuit breaker.
        registry: the app's metrics registry.
        limits: decoding limits, for a shadow that decodes images itself.
    """

    def __init__(
        self,
        settings: ServingSettings,
        champion: ModelService,
        guard: RedisGuard,
        registry: CollectorRegistry,
        limits: ImageLimits,
    ) -> None:
        assert champion.source is not None, "a shadow follows an alias of the champion's registry model"
        self.share = settings.shadow_share
        self.champion = champion
        self.metrics = ShadowMetrics(registry)
        self.models = ModelService(
            ModelSource(champion.source.tracking_uri, champion.source.name, settings.shadow_alias),
            batch_images=settings.inference_batch_images,
            metrics=self.metrics,
            poll_interval=settings.poll_interval_seconds,
            registry_timeout=settings.registry_timeout_seconds,
            retry_failed_after=settings.retry_failed_version_seconds,
            load_timeout=settings.reload_timeout_seconds,
            prepare=lambda shadow: borrow_backbone(shadow, self.champion.current),
            role="shadowing",
            release_when_absent=True,
        )
        self.writer = PairWriter(guard, settings.redis_key_prefix, self.metrics, settings.shadow_stream_maxlen)
        self.worker = ShadowWorker(
            lambda: self.models.current,
            limits,
            self.writer.add,
            self.metrics,
            settings.shadow_queue_size,
            settings.inference_batch_images,
        )
        self._partner: LoadedModel | None = None
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        """Starts following the alias without waiting for it: the app is ready on the champion alone."""
        self._partner = self.champion.current
        await self.writer.start()
        self.worker.start()
        await self.models.start(wait=0)
        self._watcher = asyncio.create_task(self._watch_champion(), name="shadow-champion-watch")

    async def stop(self) -> None:
        """Scores the images already queued and writes their pairs, then stops."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.models.close()
        await self.worker.close(STOP_SECONDS)
        await self.writer.stop()

    def answered(self, region: str, result: Classified, answers: Sequence[Answer]) -> None:
        """Hands ``SHADOW_SHARE`` of the answered images to the shadow; no I/O, returns at once.

        Args:
            region: the request's region.
            result: what the champion made of the request.
            answers: its answered images, in order (``result``'s outcomes that have a prediction).
        """
        try:
            self._mirror(region, result, answers)
        except Exception:  # mirroring must never cost a client its answer
            logger.exception("mirroring %d answers to the shadow failed", len(answers))
            self.metrics.dropped.labels("failed").inc(len(answers))

    def _mirror(self, region: str, result: Classified, answers: Sequence[Answer]) -> None:
        shadow = self.models.current
        predicted = [outcome for outcome in result.outcomes if outcome.prediction is not None]
        champion_featurizer = featurizer_version(result.model)
        own_pass = shadow is not None and featurizer_version(shadow) != champion_featurizer
        if shadow is not None and shadow.version == result.model.version:
            return  # the challenger was promoted and still holds its alias: nothing to compare
        now = time.time()
        for answer, outcome in zip(answers, predicted, strict=True):
            if outcome.features is None or (self.share < 1.0 and random.random() >= self.share):
                continue
            if shadow is None:
                self.metrics.dropped.labels("no_shadow").inc()
                continue
            item = Mirrored(
                answer.item_id,
                now,
                region,
                result.model.version,
                champion_featurizer,
                outcome.model_ms,
                answer.prediction,
                outcome.features,
                answer.image if own_pass else None,  # the features are all a sharing shadow needs
            )
            if not self.worker.put(item):
                self.metrics.dropped.labels("queue_full").inc()

    def describe(self) -> dict[str, Any] | None:
        """The shadow version for the metadata endpoint; None while none is loaded."""
        shadow, champion = self.models.current, self.champion.current
        if shadow is None:
            return None
        shared = champion is not None and shadow.classifier.featurizer is champion.classifier.featurizer
        return {
            "name": shadow.name,
            "version": shadow.version,
            "alias": shadow.alias,
            "featurizer": featurizer_version(shadow),
            "featurizer_shared": shared,
            "share": self.share,
            "loaded_at": shadow.loaded_at.isoformat(),
        }

    async def _watch_champion(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            champion = self.champion.current
            if champion is self._partner:
                continue
            self._partner = champion
            try:
                outcome = await self.models.reload()
            except Exception:  # the next champion change tries again; pairs go on meanwhile
                logger.exception("preparing the shadow for champion version %s failed", champion and champion.version)
            else:
                logger.info("champion changed: shadow %s", outcome.detail)
