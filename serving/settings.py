"""Settings of the serving process, read from the environment by ``get_settings()``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from feedback import defaults as labels_defaults
from vehicle_model.featurizer import usable_cores

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ServingSettings(BaseSettings):
    """Everything the app needs; each field maps to the upper-case environment variable.

    Attributes:
        mlflow_tracking_uri: registry to load models from.
        model_name: registered model name.
        model_alias: alias whose version is served; polled for moves.
        redis_url: Redis for reports, stats, cache and rate limits; unset keeps them in memory.
        redis_key_prefix: prefix of every Redis key, so several deployments can share a Redis.
        redis_timeout_seconds: socket connect/read timeout: far above a healthy answer (< 1 ms)
            and above event-loop lag on a saturated host, short enough that an outage costs one
            request this long before the breaker opens.
        redis_max_connections: most connections to Redis; callers beyond it wait for a free one.
        redis_retry_after_seconds: after a Redis failure, how long to use memory before retrying.
        memory_fallback_max_items: bound of each in-memory fallback store.
        poll_interval_seconds: how often the alias is checked.
        registry_timeout_seconds: longest wait for one registry call before it counts as unreachable.
        retry_failed_version_seconds: how long a version that failed to load is left alone.
        reload_timeout_seconds: longest ``POST /admin/reload`` waits for a load before answering 504.
        max_batch_files: most files in one classify-batch request.
        max_file_bytes: largest single upload.
        max_body_bytes: largest request body.
        max_image_pixels: largest width*height decoded (decompression-bomb guard).
        body_timeout_seconds: longest a request body may take to arrive after its headers (408).
        keep_alive_timeout_seconds: an idle keep-alive connection is closed after this (uvicorn).
        report_ttl_seconds: how long reports are kept.
        classify_cache_ttl_seconds: how long classification results are cached per image and model version.
        low_confidence_threshold: a top probability below this is flagged in reports.
        low_margin_threshold: a top-1 minus top-2 gap below this is flagged in reports.
        api_key: key for ``/admin/*`` (``X-API-Key``); unset leaves admin open, but only to
            loopback callers on a loopback address unless ``admin_open`` says otherwise.
        admin_open: serve ``/admin/*`` without a key to any address (explicit opt-in).
        client_keys: client name -> sha256 hex digest of its key; empty turns client
            authentication off (every caller is the anonymous client).
        operator_key_sha256: sha256 hex digest of the key that reads ``/api/stats``.
        rate_limit_per_minute: requests per client address per minute; 0 disables the limit.
        trusted_proxies: addresses or networks (comma-separated; ``*`` for any) of reverse
            proxies whose ``X-Forwarded-For`` names the client; the rate limit and the access
            log then see the real client instead of the proxy.
        cors_origins: allowed CORS origins; empty disables CORS.
        inference_threads: concurrent inference calls; each gets cores // threads ONNX threads.
        inference_batch_images: most images one inference call takes from the requests waiting.
        prediction_log_sample_rate: share of inferred images recorded in the prediction log (0 turns it off).
        prediction_log_max_per_second: most records per second this process logs; 0 is no cap.
        prediction_log_maxlen: approximate length cap of the Redis stream (``XADD MAXLEN ~``).
        prediction_log_flush_seconds: how often the background writer appends queued records.
        shadow_alias: alias of the version scored in the shadow of the champion (after each answer,
            never seen by clients); empty turns the shadow off, as does an unset ``redis_url``.
        shadow_share: share of the images the champion answered (batch items each on their own)
            that the shadow scores; 0 turns the shadow off.
        shadow_queue_size: images waiting for the shadow; beyond it mirrored images are dropped.
        shadow_stream_maxlen: approximate length cap of the Redis stream of shadow pairs.
        labels_database_url: SQLAlchemy URL of the label store (kept items, labels, reviews).
        review_images_url: fsspec URL (or folder) where the images kept for review are stored.
        review_sampling: keep a sample of answered images for review; false keeps none (feedback
            still works and counts towards online accuracy).
        review_uniform_share: share of all answers kept regardless of anything else (the unbiased baseline).
        review_uncertain_share: share of the answers with an attribute not ``confident`` that is kept.
        review_drifted_share: share of the answers from regions whose latest drift status is drift kept.
        review_max_per_hour: most images this process keeps per hour.
        review_max_total: no image is kept while the store holds this many items.
        review_retention_days: kept items, their labels and images are deleted after this many days.
        review_queue_max_mb: image bytes waiting for the review writer; beyond it samples are dropped.
        review_refresh_seconds: how often drift statuses, store counts and online accuracy are re-read.
        feedback_window_seconds: how long an answer accepts feedback (its receipt's TTL); 0 turns
            feedback and receipts off.
        log_dir: folder of the rotating ``api.log``.
        log_level: level of the ``serving`` logger.
        serving_host: interface ``python -m serving`` binds.
        serving_port: port ``python -m serving`` listens on.
        serving_workers: uvicorn worker processes (each loads its own model copy).
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    model_name: str = "vehicle-classifier"
    model_alias: str = "champion"

    redis_url: str | None = None
    redis_key_prefix: str = "vehicles"
    redis_timeout_seconds: float = Field(1.0, gt=0)
    redis_max_connections: int = Field(16, ge=1)
    redis_retry_after_seconds: float = Field(5.0, ge=0)
    memory_fallback_max_items: int = Field(10_000, ge=1)

    poll_interval_seconds: float = Field(30.0, gt=0)
    registry_timeout_seconds: float = Field(30.0, gt=0)
    retry_failed_version_seconds: float = Field(300.0, ge=0)
    reload_timeout_seconds: float = Field(60.0, gt=0)

    max_batch_files: int = Field(64, ge=1)
    max_file_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    body_timeout_seconds: float = Field(60.0, gt=0)
    keep_alive_timeout_seconds: int = Field(5, ge=1)

    report_ttl_seconds: int = Field(3600, ge=1)
    classify_cache_ttl_seconds: int = Field(3600, ge=1)
    low_confidence_threshold: float = Field(0.6, ge=0, le=1)
    low_margin_threshold: float = Field(0.15, ge=0, le=1)

    api_key: SecretStr | None = None
    admin_open: bool = False
    client_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    operator_key_sha256: str | None = None
    rate_limit_per_minute: int = Field(600, ge=0)
    trusted_proxies: str = "127.0.0.1,::1"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    inference_threads: int = Field(default_factory=usable_cores, ge=1)
    inference_batch_images: int = Field(32, ge=1)

    prediction_log_sample_rate: float = Field(1.0, ge=0, le=1)
    prediction_log_max_per_second: float = Field(20.0, ge=0)
    prediction_log_maxlen: int = Field(100_000, ge=1)
    prediction_log_flush_seconds: float = Field(0.5, gt=0)

    shadow_alias: str = "challenger"
    shadow_share: float = Field(1.0, ge=0, le=1)
    shadow_queue_size: int = Field(256, ge=1)
    shadow_stream_maxlen: int = Field(100_000, ge=1)

    labels_database_url: str = labels_defaults.DATABASE_URL
    review_images_url: str = labels_defaults.IMAGES_URL
    review_sampling: bool = True
    review_uniform_share: float = Field(0.02, ge=0, le=1)
    review_uncertain_share: float = Field(0.25, ge=0, le=1)
    review_drifted_share: float = Field(0.5, ge=0, le=1)
    review_max_per_hour: int = Field(200, ge=0)
    review_max_total: int = Field(20_000, ge=0)
    review_retention_days: float = Field(labels_defaults.RETENTION_DAYS, gt=0)
    review_queue_max_mb: float = Field(64.0, gt=0)
    review_refresh_seconds: float = Field(30.0, gt=0)
    feedback_window_seconds: int = Field(7 * 86_400, ge=0)

    log_dir: Path = Path("logs")
    log_level: str = "INFO"

    serving_host: str = "127.0.0.1"
    serving_port: int = Field(8000, ge=1, le=65535)
    serving_workers: int = Field(1, ge=1)

    @field_validator("client_keys", mode="before")
    @classmethod
    def _name_digest_pairs(cls, value: object) -> object:
        # "alice:<sha256 hex>,bob:<sha256 hex>" or a JSON object.
        if isinstance(value, str):
            if value.lstrip().startswith("{"):
                return json.loads(value)
            pairs = [item.strip().partition(":") for item in value.split(",") if item.strip()]
            return {name.strip(): digest.strip().lower() for name, _, digest in pairs}
        return value

    @field_validator("client_keys")
    @classmethod
    def _digests_only(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if not name or not SHA256_HEX.match(digest):
                raise ValueError(f"client key for {name!r} must be NAME:<64 hex digits of sha256(key)>")
        return value

    @field_validator("operator_key_sha256")
    @classmethod
    def _operator_digest(cls, value: str | None) -> str | None:
        if value is not None and not SHA256_HEX.match(value.lower()):
            raise ValueError("OPERATOR_KEY_SHA256 must be 64 hex digits of sha256(key)")
        return value.lower() if value else None

    @field_validator("redis_url", "api_key", "operator_key_sha256", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # Accept "https://a,https://b" as well as a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def onnx_threads(self) -> int:
        """ONNX Runtime threads per inference call, so all calls together fit the cores."""
        return max(1, usable_cores() // self.inference_threads)


def get_settings() -> ServingSettings:
    """Builds the settings from the environment (call it in the process entry point)."""
    return ServingSettings()
