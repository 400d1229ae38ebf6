"""Shapes of requests and responses, as they appear in the OpenAPI document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

from litestar.datastructures import UploadFile
from litestar.openapi import ResponseSpec

ReportFormat = Literal["json", "html"]


@dataclass
class ImageUpload:
    """Multipart form with one image in ``file``."""

    file: UploadFile


@dataclass
class BatchUpload:
    """Multipart form with images in repeated ``files`` parts."""

    files: list[UploadFile]


@dataclass
class ReportUpload:
    """Multipart form for a report: the image, an optional vehicle id and the answer format."""

    file: UploadFile
    vehicle_id: str | None = None
    format: ReportFormat | None = None


class TopClass(TypedDict):
    label: str
    probability: float


class Confidence(TypedDict):
    max_probability: float
    margin: float
    entropy: float
    normalized_entropy: float


class AttributePrediction(TypedDict):
    label: str
    top_k: list[TopClass]
    confidence: Confidence


class ModelRef(TypedDict):
    name: str
    version: str


class Timing(TypedDict):
    total_ms: float
    inference_ms: float


class ClassifyResponse(TypedDict):
    model: ModelRef
    predictions: dict[str, AttributePrediction]
    cached: bool
    timing: Timing
    request_id: str


class ErrorDetail(TypedDict, total=False):
    status: int
    code: str
    message: str
    accepted: list[str]
    request_id: str


class ErrorBody(TypedDict):
    error: ErrorDetail


class BatchItem(TypedDict):
    index: int
    filename: str | None
    status: Literal["ok", "error"]
    cached: bool
    predictions: dict[str, AttributePrediction] | None
    error: ErrorDetail | None


class BatchSummary(TypedDict):
    total: int
    ok: int
    failed: int
    cache_hits: int
    class_counts: dict[str, dict[str, int]]


class BatchResponse(TypedDict):
    model: ModelRef
    results: list[BatchItem]
    summary: BatchSummary
    timing: Timing
    request_id: str


class ReportAnalysis(TypedDict):
    overall_confidence: float
    low_confidence: list[str]
    thresholds: dict[str, float]


class Report(TypedDict):
    vehicle_id: str
    created_at: str
    expires_at: str
    model: ModelRef
    predictions: dict[str, AttributePrediction]
    analysis: ReportAnalysis
    recommendations: list[str]


class RegionStatsBody(TypedDict):
    region: str
    total_requests: int
    requests: dict[str, int]
    predictions: dict[str, dict[str, int]]


class RegionsBody(TypedDict):
    storage: Literal["redis", "memory"]
    regions: list[RegionStatsBody]


class ReadyBody(TypedDict):
    ready: bool
    model_version: str | None
    reason: str | None
    redis: Literal["ok", "degraded", "memory"]


class ReloadBody(TypedDict):
    outcome: str
    alias_version: str | None
    serving: str | None
    detail: str


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error answers a handler may give."""
    # No generated examples: they would be random (an error with "status": 1899) and differ per process.
    return {
        status: ResponseSpec(ErrorBody, description="error; see `error.code`", generate_examples=False)
        for status in statuses
    }
