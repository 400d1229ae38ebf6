"""Liveness, readiness, model metadata, metrics, admin and the upload page."""

from __future__ import annotations

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template
from prometheus_client import CONTENT_TYPE_LATEST

from serving.errors import ApiError
from serving.model_service import ModelService
from serving.schemas import ReadyBody, ReloadBody, error_responses
from serving.services import Services
from serving.settings import ServingSettings

# Probes, scrapes and the page are exempt from the rate limit (``RateLimitConfig.exclude_opt_key``).
SKIP_RATE_LIMIT = "skip_rate_limit"
NOT_RATE_LIMITED = {SKIP_RATE_LIMIT: True}


@get("/health", opt=NOT_RATE_LIMITED, tags=["system"])
async def health() -> dict[str, str]:
    """Liveness: the process answers. Says nothing about the model."""
    return {"status": "ok"}


@get("/ready", opt=NOT_RATE_LIMITED, tags=["system"], responses=error_responses(503))
async def ready(services: NamedDependency[Services]) -> Response[ReadyBody]:
    """Readiness: 200 once a model is loaded (503 with the reason before); Redis state included."""
    model = services.models.current
    body: ReadyBody = {
        "ready": model is not None,
        "model_version": model.version if model else None,
        "reason": services.models.problem,
        "redis": await services.guard.probe(),
    }
    return Response(body, status_code=200 if model is not None else 503)


@get("/api/models/metadata", tags=["models"], responses=error_responses(503))
async def metadata(models: NamedDependency[ModelService]) -> dict:
    """The served version: name, version, alias, run, candidate, metrics, classes, featurizer."""
    return models.require().describe()


@get("/metrics", opt=NOT_RATE_LIMITED, include_in_schema=False)
async def metrics(services: NamedDependency[Services]) -> Response[bytes]:
    """Prometheus exposition: requests by route and status, and the app's own metrics."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@post("/reload", status_code=200, tags=["admin"], responses=error_responses(401, 403))
async def reload(models: NamedDependency[ModelService]) -> ReloadBody:
    """Checks the alias now (retrying a version that failed); needs ``X-API-Key`` when a key is set."""
    if models.source is None:
        raise ApiError(409, "no_registry", "this app serves a fixed model; there is no registry to reload from")
    result = await models.refresh(force=True)
    return {"outcome": result.outcome, "alias_version": result.version, "serving": result.serving,
            "detail": result.detail}


@get("/", opt=NOT_RATE_LIMITED, include_in_schema=False)
async def index(settings: NamedDependency[ServingSettings]) -> Template:
    """A page to upload an image and see its HTML report."""
    return Template("index.html", context={"max_mb": settings.max_file_bytes / (1024 * 1024)})
