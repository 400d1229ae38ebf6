"""Prometheus metrics of the shadow, in the app's own registry (``ServingMetrics.registry``).

The shadow's follower records its loads here, not in ``ServingMetrics``: ``vehicle_model_info``
names the champion alone, whatever the shadow loads.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ShadowMetrics:
    """Pairs written, mirrored images lost (by reason), and the shadow version's lifecycle."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pairs = Counter(
            "vehicle_shadow_pairs_total",
            "Mirrored images scored by the shadow version and appended to the shadow stream.",
            registry=registry,
        )
        self.dropped = Counter(
            "vehicle_shadow_dropped_total",
            "Mirrored images that gave no pair: queue_full (the shadow is behind), no_shadow (no shadow "
            "version loaded that can score them), failed (an error in the shadow path), redis_unavailable.",
            ["reason"],
            registry=registry,
        )
        self.model_info = Gauge(
            "vehicle_shadow_model_info",
            "The version scored in the shadow (value 1).",
            ["name", "version", "alias"],
            registry=registry,
        )
        self.model_reloads = Counter(
            "vehicle_shadow_reloads_total", "Shadow versions loaded and swapped in.", registry=registry
        )
        self.model_reload_failures = Counter(
            "vehicle_shadow_reload_failures_total",
            "Shadow versions that failed to load or warm up (clients never notice).",
            registry=registry,
        )
        self._held: tuple[str, str, str] | None = None

    def serving(self, name: str, version: str, alias: str) -> None:
        """Marks ``version`` as the shadow, dropping the previous shadow's series."""
        if self._held is not None:
            self.model_info.remove(*self._held)
        self._held = (name, version, alias)
        self.model_info.labels(name, version, alias).set(1)

    def released(self) -> None:
        """No version is held in the shadow any more (its alias is gone)."""
        if self._held is not None:
            self.model_info.remove(*self._held)
        self._held = None
