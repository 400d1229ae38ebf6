"""Prometheus metrics of the learning loop, in the app's own registry (``ServingMetrics.registry``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class LearningMetrics:
    """Kept images, drops, labels and online accuracy."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.kept = Counter(
            "vehicle_review_kept_total",
            "Answered images kept for review, by reason (one image may count under several).",
            ["reason"],
            registry=registry,
        )
        self.not_kept = Counter(
            "vehicle_review_dropped_total",
            "Images chosen for review but not kept: queue_full (the writer is behind), "
            "hourly_cap, total_cap, id_taken (a reused request id), write_failed.",
            ["reason"],
            registry=registry,
        )
        self.labels = Counter(
            "vehicle_labels_total",
            "Labels stored, by source (feedback, review) and outcome (created, replaced, ...).",
            ["source", "outcome"],
            registry=registry,
        )
        self.online_accuracy = Gauge(
            "vehicle_online_accuracy",
            "Accuracy of the served version on labelled live traffic, per region and attribute.",
            ["region", "attribute"],
            registry=registry,
        )
        self.online_labelled = Gauge(
            "vehicle_online_labelled",
            "Unbiased labels behind vehicle_online_accuracy, per region and attribute.",
            ["region", "attribute"],
            registry=registry,
        )
        self.queued = Gauge(
            "vehicle_review_queued",
            "Kept items waiting for a review, per region.",
            ["region"],
            registry=registry,
        )
