"""Shapes of requests and responses, as they appear in the OpenAPI document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, TypedDict

from litestar.datastructures import UploadFile
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import KwargDefinition

from vehicle_model.decisions import Decision

ReportFormat = Literal["json", "html"]


@dataclass
class ImageBodyOperation(Operation):
    """OpenAPI of an endpoint that reads one image as the raw body or as a multipart ``file`` part.

    The handler reads the body itself (the content type decides how), so the request body is
    described here rather than derived from a ``data`` parameter.
    """

    def __post_init__(self) -> None:
        binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        form = Schema(type=OpenAPIType.OBJECT, properties={"file": binary}, required=["file"])
        self.request_body = RequestBody(
            required=True,
            description=(
                "One image (PNG, JPEG, WebP, BMP, TIFF or GIF): the raw body with any `image/*` Content-Type "
                "(`curl --data-binary @car.jpg -H 'Content-Type: image/jpeg'`), which skips multipart "
                "parsing, or the `file` part of a multipart form. The format is read from the bytes."
            ),
            content={"image/*": OpenAPIMediaType(schema=binary), "multipart/form-data": OpenAPIMediaType(schema=form)},
        )


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


# Field descriptions go through KwargDefinition: Litestar reads no other annotation of a TypedDict field.
DECISION_DESCRIPTION = (
    "Whether to trust `label`. `confident`: the calibrated confidence clears the threshold fitted "
    "with this model version for this attribute (fitted on validation images to a target precision). "
    "`uncertain`: it does not, or the version has no threshold; review before relying on it. "
    "`undetermined`: the image cannot carry this attribute (colour on a greyscale frame); `label` "
    "stays the most probable class, but do not trust it."
)
REASON_DESCRIPTION = "Why the answer is not `confident`, in one sentence; absent when it is."


class _Reason(TypedDict, total=False):
    # A base of its own: with postponed annotations, NotRequired[...] is not seen by TypedDict on 3.11.
    reason: Annotated[str, KwargDefinition(description=REASON_DESCRIPTION)]


class AttributePrediction(_Reason):
    label: str
    top_k: list[TopClass]
    confidence: Confidence
    decision: Annotated[Decision, KwargDefinition(description=DECISION_DESCRIPTION)]


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


class DecisionCounts(TypedDict):
    confident: int
    uncertain: int
    undetermined: int


class BatchSummary(TypedDict):
    total: int
    ok: int
    failed: int
    cache_hits: int
    class_counts: dict[str, dict[str, int]]
    decisions: Annotated[
        dict[str, DecisionCounts],
        KwargDefinition(description="Per attribute, how many of the batch's answers got each `decision`."),
    ]


class BatchResponse(TypedDict):
    model: ModelRef
    results: list[BatchItem]
    summary: BatchSummary
    timing: Timing
    request_id: str


class ReportAnalysis(TypedDict):
    overall_confidence: float
    low_confidence: Annotated[
        list[str], KwargDefinition(description="Attributes below this deployment's `thresholds`.")
    ]
    not_confident: Annotated[
        list[str], KwargDefinition(description="Attributes whose `decision` is `uncertain` or `undetermined`.")
    ]
    thresholds: dict[str, float]


class Report(TypedDict):
    vehicle_id: str
    created_at: str
    expires_at: str
    model: ModelRef
    predictions: dict[str, AttributePrediction]
    analysis: ReportAnalysis
    recommendations: list[str]


class DriftStatusBody(TypedDict):
    """The latest drift check of a region (``flows/monitoring.py``)."""

    drift: bool
    drifted: list[str]
    records: int
    version: str
    checked_at: str


class FeedbackStatsBody(TypedDict):
    """Online accuracy of the served version in one region, from unbiased labels only (``basis``)."""

    labelled: int
    accuracy: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    basis: str


class RegionStatsBody(TypedDict):
    region: str
    total_requests: int
    requests: dict[str, int]
    predictions: dict[str, dict[str, int]]
    decisions: Annotated[
        dict[str, DecisionCounts],
        KwargDefinition(description="Per attribute, how many of the region's answers got each `decision`."),
    ]
    drift: DriftStatusBody | None
    feedback: FeedbackStatsBody | None


class RegionsBody(TypedDict):
    storage: Literal["redis", "memory"]
    drift: DriftStatusBody | None
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
