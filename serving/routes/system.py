"""Liveness, readiness, model metadata, metrics and the upload page."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.response import Template
from prometheus_client import CONTENT_TYPE_LATEST

from serving.http.schemas import ReadyBody, error_responses
from serving.security.rate_limit import PUBLIC
from serving.settings import ServingSettings
from serving.wiring import Services


@get("/health", opt=PUBLIC, tags=["system"])
async def health() -> dict[str, str]:
    """Liveness: the process answers. Says nothing about the model."""
    return {"status": "ok"}


@get("/ready", opt=PUBLIC, tags=["system"], responses=error_responses(503))
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
async def metadata(services: NamedDependency[Services]) -> dict:
    """The served version: name, version, alias, run, candidate, metrics, classes, featurizer; and
    ``shadow``, the version scored in its shadow (name, version, alias, featurizer, whether it shares
    the champion's, share), null when there is none."""
    shadow = services.shadow.describe() if services.shadow is not None else None
    return {**services.models.require().describe(), "shadow": shadow}


@get("/metrics", opt=PUBLIC, include_in_schema=False)
async def metrics(services: NamedDependency[Services]) -> Response[bytes]:
    """Prometheus exposition: requests by route and status, and the app's own metrics."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@get("/", opt=PUBLIC, include_in_schema=False)
async def index(settings: NamedDependency[ServingSettings]) -> Template:
    """A page to upload an image and see its HTML report."""
    return Template("index.html", context={"max_mb": settings.max_file_bytes / (1024 * 1024)})
