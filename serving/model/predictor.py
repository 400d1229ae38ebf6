"""Classification with a result cache keyed by (image sha256, model version).

A repeated upload under the same model version skips decoding and inference; a new version
never sees another version's answers because the version is part of the key. New results are
written to the cache after the answer has gone out (no client waits for that round trip);
until the write lands, a repeat is answered from the results still being written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from litestar.stores.base import Store

from serving.model.service import ModelService
from serving.model.source import LoadedModel
from serving.monitoring.metrics import ServingMetrics
from serving.monitoring.prediction_log import PredictionLog
from serving.monitoring.region_stats import DEFAULT_REGION
from vehicle_model.images import ImageDecodeError, ImageLimits
from vehicle_model.records import Prediction

logger = logging.getLogger("serving.cache")
# Part of every cache key: the shape of a cached result. Bumped when results gain a field a
# reader needs (``decision``), so a replica never reads another code version's older results.
RESULT_FORMAT = "r2"


@dataclass(frozen=True)
class ImageOutcome:
    """One image's result: a prediction or the reason it was rejected.

    Attributes:
        prediction: attribute -> label and class probabilities; None when rejected.
        error: why ``decode_image`` rejected the file; None when predicted.
        cached: the prediction came from the cache.
        features: the image's featurizer row when the model predicted it now (None when cached
            or rejected), for a shadow version that shares the featurizer.
        model_ms: the model call's decode and inference time per image (0 unless predicted now).
    """

    prediction: Prediction | None
    error: ImageDecodeError | None = None
    cached: bool = False
    features: np.ndarray | None = None
    model_ms: float = 0.0


@dataclass(frozen=True)
class Classified:
    """The outcomes of one request, all from one model version.

    Attributes:
        model: the model snapshot every outcome comes from.
        outcomes: one per input, in input order.
        inference_ms: time spent decoding and predicting the cache misses.
    """

    model: LoadedModel
    outcomes: list[ImageOutcome]
    inference_ms: float

    @property
    def predictions(self) -> list[Prediction]:
        return [o.prediction for o in self.outcomes if o.prediction is not None]


class Predictor:
    """Cache lookup, one batched inference over the misses, cache fill, metrics.

    Args:
        models: the model service (snapshot + inference pool).
        cache: the store holding results (a ``ResilientStore`` in the app).
        metrics: counters for cache hits/misses and predictions.
        limits: decoding limits.
        cache_ttl: seconds a cached result lives.
        log: the prediction log fed with every inferred image (a cache hit is already in it).
    """

    def __init__(
        self,
        models: ModelService,
        cache: Store,
        metrics: ServingMetrics,
        limits: ImageLimits,
        cache_ttl: int,
        log: PredictionLog | None = None,
    ) -> None:
        self.models = models
        self.cache = cache
        self.metrics = metrics
        self.limits = limits
        self.cache_ttl = cache_ttl
        self.log = log
        self._unwritten: dict[str, str] = {}  # key -> result JSON, until its cache write lands
        self._writes: set[asyncio.Task] = set()

    async def classify(self, blobs: Sequence[bytes], region: str = DEFAULT_REGION) -> Classified:
        """Predictions for every blob, from one model version; ``region`` goes into the log.

        Raises:
            ModelUnavailable: no model is loaded.
        """
        model = self.models.require()
        keys = [f"{model.name}:{model.version}:{RESULT_FORMAT}:{hashlib.sha256(blob).hexdigest()}" for blob in blobs]
        outcomes: list[ImageOutcome | None] = list(await asyncio.gather(*(self._cached(key) for key in keys)))
        misses = [i for i, outcome in enumerate(outcomes) if outcome is None]
        self.metrics.cache_hits.inc(len(blobs) - len(misses))
        self.metrics.cache_misses.inc(len(misses))
        inference_ms = 0.0
        if misses:
            started = time.perf_counter()
            inferred = await self.models.predict(model, [blobs[i] for i in misses], self.limits)
            elapsed = time.perf_counter() - started
            self.metrics.inference_seconds.labels("batch" if len(misses) > 1 else "single").observe(elapsed)
            inference_ms = elapsed * 1000
            fills: dict[str, str] = {}
            rows = iter(inferred.features)  # one per predicted image
            for i, result in zip(misses, inferred.results, strict=True):
                if isinstance(result, ImageDecodeError):
                    outcomes[i] = ImageOutcome(prediction=None, error=result)
                else:
                    outcomes[i] = ImageOutcome(result, features=next(rows), model_ms=inferred.ms_per_image)
                    fills[keys[i]] = json.dumps(result)
            self._write_later(fills)
            if self.log is not None:
                predicted = [r for r in inferred.results if not isinstance(r, ImageDecodeError)]
                self.log.submit(model.name, model.version, region, predicted, inferred.summaries)
        done = [outcome for outcome in outcomes if outcome is not None]
        self.metrics.count_predictions(o.prediction for o in done if o.prediction is not None)
        return Classified(model=model, outcomes=done, inference_ms=inference_ms)

    async def drain(self) -> None:
        """Waits for the cache writes still in flight (on shutdown, so none is cut off)."""
        await asyncio.gather(*list(self._writes))

    async def _cached(self, key: str) -> ImageOutcome | None:
        raw = self._unwritten.get(key)
        if raw is None:
            raw = await self.cache.get(key)
        return None if raw is None else ImageOutcome(prediction=json.loads(raw), cached=True)

    def _write_later(self, fills: dict[str, str]) -> None:
        if not fills:
            return
        self._unwritten.update(fills)
        task = asyncio.create_task(self._write(fills), name="cache-write")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, fills: dict[str, str]) -> None:
        writes = [self.cache.set(key, raw, expires_in=self.cache_ttl) for key, raw in fills.items()]
        try:
            for outcome in await asyncio.gather(*writes, return_exceptions=True):
                if isinstance(outcome, Exception):
                    logger.warning("cache write failed for one result: %r", outcome)
        finally:
            for key in fills:
                self._unwritten.pop(key, None)
