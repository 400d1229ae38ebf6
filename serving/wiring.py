"""The app's collaborators, built from settings without touching the network.

Construction does no I/O (no Redis connection, no registry call): ``start`` and ``stop``,
run from the app's lifespan, do that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from serving.learning.metrics import LearningMetrics
from serving.learning.service import LearningLoop
from serving.model.predictor import Predictor
from serving.model.service import ModelService
from serving.model.source import ModelSource
from serving.monitoring.metrics import ServingMetrics
from serving.monitoring.prediction_log import PredictionLog
from serving.monitoring.region_stats import RegionStats
from serving.results.reports import ReportStore
from serving.settings import ServingSettings
from serving.shadow.service import Shadow
from serving.storage.stores import RedisGuard, ResilientStore, redis_client
from vehicle_model.images import ImageLimits

logger = logging.getLogger("serving.app")
LAST_FLUSH_ATTEMPTS = 3


@dataclass
class Services:
    """Everything the handlers use, shared by all requests of one app."""

    settings: ServingSettings
    metrics: ServingMetrics
    limits: ImageLimits
    guard: RedisGuard
    models: ModelService
    predictor: Predictor
    reports: ReportStore
    stats: RegionStats
    rate_limit_store: ResilientStore
    prediction_log: PredictionLog
    learning: LearningLoop
    shadow: Shadow | None = None
    _flusher: asyncio.Task | None = field(default=None, repr=False)

    async def start(self) -> None:
        state = await self.guard.probe()
        logger.info("redis: %s", state)
        if self.guard.redis is not None:
            # After a failed send: as often as the breaker lets Redis be tried, within 0.5-5 s.
            retry = min(5.0, max(0.5, self.settings.redis_retry_after_seconds))
            self._flusher = asyncio.create_task(self.stats.keep_flushing(retry), name="stats-flusher")
        if self.settings.api_key is None:
            logger.warning("API_KEY is not set: admin endpoints are open")
        if self.shadow is None and self.settings.shadow_alias and self.guard.redis is None:
            logger.warning("SHADOW_ALIAS is set but REDIS_URL is not: shadow pairs would go nowhere, so it is off")
        await self.models.start(wait=self.settings.registry_timeout_seconds)
        if self.shadow is not None:
            await self.shadow.start()  # after the champion's first load, whose backbone it may borrow
        await self.prediction_log.start()
        await self.learning.start()

    async def stop(self) -> None:
        # Cache writes first: one failing on a connection Redis dropped would open the breaker
        # under the last flush below.
        await self.predictor.drain()
        # Receipts are claimed in Redis and kept images written before the connections close.
        await self.learning.stop()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            # A last try, so a clean shutdown loses no count: past an open breaker (a recent
            # failure may be one stale connection of a restarted Redis), a few times, since each
            # such connection fails once and at once.
            for _ in range(LAST_FLUSH_ATTEMPTS):
                if await self.stats.flush(force=True):
                    break
        if self.shadow is not None:
            await self.shadow.stop()  # the images it has queued are scored and written first
        await self.models.close()
        await self.prediction_log.stop()
        await self.guard.close()


def build_services(settings: ServingSettings, models: ModelService | None = None) -> Services:
    """Wires the services for ``settings``; ``models`` replaces the registry-backed one (tests)."""
    metrics = models.metrics if models is not None else ServingMetrics()
    redis = (
        redis_client(settings.redis_url, settings.redis_timeout_seconds, settings.redis_max_connections)
        if settings.redis_url
        else None
    )
    guard = RedisGuard(
        redis, settings.redis_retry_after_seconds, on_change=lambda up: metrics.redis_up.set(1 if up else 0)
    )
    prefix = settings.redis_key_prefix

    def store(name: str) -> ResilientStore:
        return ResilientStore(guard, f"{prefix}:{name}", settings.memory_fallback_max_items)

    if models is None:
        models = ModelService(
            ModelSource(settings.mlflow_tracking_uri, settings.model_name, settings.model_alias),
            inference_threads=settings.inference_threads,
            onnx_threads=settings.onnx_threads,
            batch_images=settings.inference_batch_images,
            metrics=metrics,
            poll_interval=settings.poll_interval_seconds,
            registry_timeout=settings.registry_timeout_seconds,
            retry_failed_after=settings.retry_failed_version_seconds,
            load_timeout=settings.reload_timeout_seconds,
        )
    limits = ImageLimits(max_bytes=settings.max_file_bytes, max_pixels=settings.max_image_pixels)
    log = PredictionLog(
        guard,
        prefix,
        metrics.prediction_log_records,
        metrics.prediction_log_dropped,
        sample_rate=settings.prediction_log_sample_rate,
        max_per_second=settings.prediction_log_max_per_second,
        maxlen=settings.prediction_log_maxlen,
        flush_seconds=settings.prediction_log_flush_seconds,
    )
    stats = RegionStats(guard, prefix)
    learning = LearningLoop(
        settings,
        store("receipt"),
        stats,
        LearningMetrics(metrics.registry),
        served_version=lambda: models.current.version if models.current is not None else None,
    )
    return Services(
        settings=settings,
        metrics=metrics,
        limits=limits,
        guard=guard,
        models=models,
        predictor=Predictor(models, store("classify"), metrics, limits, settings.classify_cache_ttl_seconds, log),
        reports=ReportStore(store("reports"), settings.report_ttl_seconds),
        stats=stats,
        rate_limit_store=store("rate_limit"),
        prediction_log=log,
        learning=learning,
        shadow=_shadow(settings, models, guard, metrics, limits),
    )


def _shadow(
    settings: ServingSettings, models: ModelService, guard: RedisGuard, metrics: ServingMetrics, limits: ImageLimits
) -> Shadow | None:
    """The shadow, when one is asked for and its pairs have somewhere to go.

    A model handed in without a registry has no aliases to follow; without Redis the pairs
    could reach no report, so scoring them would only cost CPU.
    """
    if not settings.shadow_alias or settings.shadow_share <= 0 or models.source is None or guard.redis is None:
        return None
    return Shadow(settings, models, guard, metrics.registry, limits)
