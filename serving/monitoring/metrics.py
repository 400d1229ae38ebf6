"""Prometheus metrics of one app: predictions and their decisions, model version, cache, Redis, reloads.

Litestar's Prometheus middleware records requests and latency by route and status in the
process-wide registry; these app-level metrics live in a registry of their own so several
apps in one process (tests) never collide. ``/metrics`` exposes both.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from vehicle_model.records import Prediction


def prometheus_config() -> PrometheusConfig:
    """Litestar's request metrics: count and latency by route template and status."""
    # Route templates, not raw paths, as labels: report ids must not explode the series count.
    return PrometheusConfig(app_name="vehicle-serving", prefix="litestar", group_path=True, exclude=["^/metrics"])


class ServingMetrics:
    """The app's own metrics, in a dedicated registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.predictions = Counter(
            "vehicle_predictions_total",
            "Predicted labels by attribute and class.",
            ["attribute", "label"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "vehicle_decisions_total",
            "Answers by attribute and decision (confident, uncertain, undetermined): the uncertain share to watch.",
            ["attribute", "decision"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "vehicle_model_info",
            "The model version being served (value 1).",
            ["name", "version", "alias"],
            registry=self.registry,
        )
        self.model_loaded = Gauge("vehicle_model_loaded", "1 when a model is loaded.", registry=self.registry)
        self.model_reloads = Counter(
            "vehicle_model_reloads_total", "Model versions loaded and swapped in.", registry=self.registry
        )
        self.model_reload_failures = Counter(
            "vehicle_model_reload_failures_total",
            "Model versions that failed to load or warm up.",
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "vehicle_classify_cache_hits_total",
            "Images answered from the classification cache.",
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "vehicle_classify_cache_misses_total", "Images that needed inference.", registry=self.registry
        )
        self.redis_up = Gauge(
            "vehicle_redis_up",
            "1 while Redis answers, 0 while the in-memory fallback is used.",
            registry=self.registry,
        )
        self.errors = Counter(
            "vehicle_errors_total",
            "Error answers by status and error code.",
            ["status", "code"],
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "vehicle_inference_seconds",
            "Decode plus model time of one inference call.",
            ["kind"],
            registry=self.registry,
        )
        self.prediction_log_records = Counter(
            "vehicle_prediction_log_records_total",
            "Prediction records appended to the Redis stream.",
            registry=self.registry,
        )
        self.prediction_log_dropped = Counter(
            "vehicle_prediction_log_dropped_total",
            "Prediction records lost: Redis away or not configured (redis_unavailable), "
            "or the queue full (queue_full).",
            ["reason"],
            registry=self.registry,
        )
        self._served: tuple[str, str, str] | None = None

    def serving(self, name: str, version: str, alias: str) -> None:
        """Marks ``version`` as the one served, dropping the previous version's series."""
        if self._served is not None:
            self.model_info.remove(*self._served)
        self._served = (name, version, alias)
        self.model_info.labels(name, version, alias).set(1)
        self.model_loaded.set(1)

    def released(self) -> None:
        """No version is served any more."""
        if self._served is not None:
            self.model_info.remove(*self._served)
        self._served = None
        self.model_loaded.set(0)

    def count_predictions(self, predictions: Iterable[Prediction]) -> None:
        for prediction in predictions:
            for attribute, result in prediction.items():
                self.predictions.labels(attribute, str(result["label"])).inc()
                self.decisions.labels(attribute, str(result["decision"])).inc()

    def render(self) -> bytes:
        """Text exposition of the process-wide registry (requests, process) and this app's."""
        return generate_latest(REGISTRY) + generate_latest(self.registry)
