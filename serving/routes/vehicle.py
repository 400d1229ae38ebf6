"""Classification and report endpoints under ``/api/vehicle``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import MultipartBody, PathParameter, QueryParameter
from litestar.response import Template

from serving.http.errors import ApiError
from serving.http.request_ids import request_id
from serving.http.schemas import (
    BatchItem,
    BatchResponse,
    BatchUpload,
    ClassifyResponse,
    ImageBodyOperation,
    Report,
    ReportFormat,
    ReportUpload,
    error_responses,
)
from serving.http.uploads import decode_error, display_name, read_image_body, read_upload
from serving.learning.service import Answer, LearningLoop, batch_answers
from serving.model.predictor import ImageOutcome, Predictor
from serving.monitoring.region_stats import RegionStats
from serving.results.presentation import class_counts, decision_counts, present
from serving.results.reports import (
    VEHICLE_ID_PATTERN,
    VEHICLE_ID_RULE,
    ReportStore,
    Thresholds,
    build_report,
    new_vehicle_id,
)
from serving.security.clients import client_name
from serving.settings import ServingSettings
from serving.storage.stores import RedisUnavailable
from serving.wiring import Services
from vehicle_model.records import Prediction

TopK = Annotated[int, QueryParameter(ge=1, le=100, description="Classes listed per attribute, most probable first.")]


UPLOAD_ERRORS = error_responses(400, 401, 408, 413, 415, 422, 429, 503)


@dataclass
class ReportOperation(Operation):
    """Reports come as JSON or, with ``format=html``, as a page: the schema says both."""

    def __post_init__(self) -> None:
        for status, response in (self.responses or {}).items():
            if status.startswith("2") and isinstance(response, OpenAPIResponse) and response.content is not None:
                response.content["text/html"] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))


class VehicleController(Controller):
    """Classify one image, a batch, or build a stored report."""

    path = "/api/vehicle"
    tags = ["vehicle"]

    @post("/classify", status_code=200, responses=UPLOAD_ERRORS, operation_class=ImageBodyOperation)
    async def classify(
        self,
        request: Request,
        services: NamedDependency[Services],
        predictor: NamedDependency[Predictor],
        stats: NamedDependency[RegionStats],
        learning: NamedDependency[LearningLoop],
        caller_region: NamedDependency[str],
        top_k: TopK = 3,
    ) -> ClassifyResponse:
        """Per attribute: the top-k classes with probabilities, the prediction's confidence and the
        decision whether to trust it (``confident``, ``uncertain`` or ``undetermined``, with a reason
        unless confident).

        Send the image as the raw body (``Content-Type: image/*``) or as the multipart ``file`` part.
        """
        started = time.perf_counter()
        predictions: list[Prediction] = []
        try:
            image = await read_image_body(request)
            result = await predictor.classify([image], caller_region)
            outcome = result.outcomes[0]
            if outcome.prediction is None:
                raise decode_error(outcome.error, predictor.limits)
            predictions = [outcome.prediction]
            answer = Answer(request_id(request.scope), outcome.prediction, image)
            learning.answered(client_name(request), caller_region, result.model, [answer])
            body: ClassifyResponse = {
                "model": {"name": result.model.name, "version": result.model.version},
                "predictions": present(outcome.prediction, top_k),
                "cached": outcome.cached,
                "timing": _timing(started, result.inference_ms),
                "request_id": request_id(request.scope),
            }
            if services.shadow is not None:
                services.shadow.answered(caller_region, result, [answer])
            return body
        finally:
            stats.record(caller_region, "classify", predictions)

    @post("/classify-batch", status_code=200, responses=UPLOAD_ERRORS)
    async def classify_batch(
        self,
        request: Request,
        data: MultipartBody[BatchUpload],
        settings: NamedDependency[ServingSettings],
        services: NamedDependency[Services],
        predictor: NamedDependency[Predictor],
        stats: NamedDependency[RegionStats],
        learning: NamedDependency[LearningLoop],
        caller_region: NamedDependency[str],
        top_k: TopK = 3,
    ) -> BatchResponse:
        """One batched inference over the good files; each bad file gets its own error entry.

        The summary counts the predicted classes and the decisions per attribute.
        """
        started = time.perf_counter()
        predictions: list[Prediction] = []
        try:
            if len(data.files) > settings.max_batch_files:
                raise ApiError(
                    413,
                    "too_many_files",
                    f"{len(data.files)} files sent; the limit is {settings.max_batch_files} per request",
                    limit_files=settings.max_batch_files,
                )
            images = [await read_upload(upload) for upload in data.files]
            result = await predictor.classify(images, caller_region)
            predictions = result.predictions
            answers = batch_answers(request_id(request.scope), images, [o.prediction for o in result.outcomes])
            learning.answered(client_name(request), caller_region, result.model, answers)
            items = [
                _batch_item(i, upload.filename, outcome, predictor, top_k)
                for i, (upload, outcome) in enumerate(zip(data.files, result.outcomes, strict=True))
            ]
            body: BatchResponse = {
                "model": {"name": result.model.name, "version": result.model.version},
                "results": items,
                "summary": {
                    "total": len(items),
                    "ok": len(predictions),
                    "failed": len(items) - len(predictions),
                    "cache_hits": sum(1 for outcome in result.outcomes if outcome.cached),
                    "class_counts": class_counts(predictions),
                    "decisions": decision_counts(predictions),
                },
                "timing": _timing(started, result.inference_ms),
                "request_id": request_id(request.scope),
            }
            if services.shadow is not None:
                services.shadow.answered(caller_region, result, answers)
            return body
        finally:
            stats.record(caller_region, "classify-batch", predictions)

    @post(
        "/report",
        status_code=201,
        responses=error_responses(400, 401, 408, 409, 413, 415, 422, 429, 503),
        operation_class=ReportOperation,
    )
    async def create_report(
        self,
        request: Request,
        data: MultipartBody[ReportUpload],
        settings: NamedDependency[ServingSettings],
        predictor: NamedDependency[Predictor],
        reports: NamedDependency[ReportStore],
        stats: NamedDependency[RegionStats],
        caller_region: NamedDependency[str],
        output: Annotated[
            ReportFormat | None, QueryParameter(name="format", description="Overrides the form's `format`.")
        ] = None,
    ) -> Response[Report]:
        """Classifies the image, stores the report under its vehicle id (TTL) and returns it.

        A ``vehicle_id`` that already holds a report is refused (409); reports are never replaced.
        """
        predictions: list[Prediction] = []
        try:
            vehicle_id = _valid_vehicle_id(data.vehicle_id) if data.vehicle_id else new_vehicle_id()
            result = await predictor.classify([await read_upload(data.file)], caller_region)
            outcome = result.outcomes[0]
            if outcome.prediction is None:
                raise decode_error(outcome.error, predictor.limits)
            predictions = [outcome.prediction]
            thresholds = Thresholds(settings.low_confidence_threshold, settings.low_margin_threshold)
            report = build_report(vehicle_id, outcome.prediction, result.model, thresholds, reports.ttl_seconds)
            if not await reports.create(report, client_name(request)):
                raise ApiError(
                    409,
                    "report_exists",
                    f"a report for vehicle_id '{vehicle_id}' already exists; reports are never replaced. "
                    "Choose another vehicle_id or leave it out to get a generated one.",
                )
            location = {"Location": f"/api/vehicle/report/{vehicle_id}"}
            return _render(report, output or data.format or "json", status_code=201, headers=location)
        finally:
            stats.record(caller_region, "report", predictions)

    @get(
        "/report/{vehicle_id:str}", responses=error_responses(400, 401, 404, 429, 503), operation_class=ReportOperation
    )
    async def get_report(
        self,
        request: Request,
        vehicle_id: Annotated[
            str,
            PathParameter(
                description=f"Vehicle id: {VEHICLE_ID_RULE}.", schema_extra={"pattern": VEHICLE_ID_PATTERN.pattern}
            ),
        ],
        reports: NamedDependency[ReportStore],
        stats: NamedDependency[RegionStats],
        caller_region: NamedDependency[str],
        output: Annotated[ReportFormat, QueryParameter(name="format")] = "json",
    ) -> Response[Report]:
        """A stored report, while it has not expired; only the client that created it sees it."""
        try:
            try:
                report = await reports.get(_valid_vehicle_id(vehicle_id), client_name(request))
            except RedisUnavailable:
                retry_after = max(1, round(reports.store.guard.retry_after))
                raise ApiError(
                    503,
                    "store_unavailable",
                    f"the report store (Redis) is not answering, so whether a report for vehicle_id "
                    f"'{vehicle_id}' exists is unknown; retry after {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                ) from None
            if report is None:
                raise ApiError(
                    404,
                    "report_not_found",
                    f"no report for vehicle_id '{vehicle_id}': it was never created or has expired "
                    f"(reports are kept {reports.ttl_seconds} s). Create one with POST /api/vehicle/report.",
                )
            return _render(report, output)
        finally:
            stats.record(caller_region, "report-get")


def _valid_vehicle_id(vehicle_id: str) -> str:
    if not VEHICLE_ID_PATTERN.match(vehicle_id):
        raise ApiError(400, "invalid_vehicle_id", f"invalid vehicle_id; expected {VEHICLE_ID_RULE}")
    return vehicle_id


def _render(report: dict[str, Any], output: str, status_code: int = 200, headers: dict | None = None) -> Response:
    if output == "html":
        return Template("report.html", context={"report": report}, status_code=status_code, headers=headers)
    return Response(report, status_code=status_code, headers=headers)


def _batch_item(index: int, filename: str | None, outcome: ImageOutcome, predictor: Predictor, k: int) -> BatchItem:
    item: BatchItem = {
        "index": index,
        "filename": display_name(filename),
        "status": "ok" if outcome.prediction is not None else "error",
        "cached": outcome.cached,
        "predictions": present(outcome.prediction, k) if outcome.prediction is not None else None,
        "error": None,
    }
    if outcome.error is not None:
        error = decode_error(outcome.error, predictor.limits)
        item["error"] = {"status": error.status, "code": error.code, "message": error.message, **error.details}
    return item


def _timing(started: float, inference_ms: float) -> dict[str, float]:
    return {"total_ms": round((time.perf_counter() - started) * 1000, 3), "inference_ms": round(inference_ms, 3)}
