"""Operator actions under ``/admin``, behind the API key."""

from __future__ import annotations

from litestar import Router, post
from litestar.di import NamedDependency

from serving.http.errors import ApiError
from serving.http.schemas import ReloadBody, error_responses
from serving.model.service import ModelService
from serving.security.api_key import admin_guard
from serving.settings import ServingSettings


@post("/reload", status_code=200, tags=["admin"], responses=error_responses(401, 403))
async def reload(models: NamedDependency[ModelService]) -> ReloadBody:
    """Checks the alias now (retrying a version that failed); needs ``X-API-Key`` when a key is set."""
    if models.source is None:
        raise ApiError(409, "no_registry", "this app serves a fixed model; there is no registry to reload from")
    result = await models.refresh(force=True)
    return {"outcome": result.outcome, "alias_version": result.version, "serving": result.serving,
            "detail": result.detail}


def admin_router(settings: ServingSettings) -> Router:
    """``/admin/*``, guarded by the API key of ``settings``."""
    return Router("/admin", route_handlers=[reload], guards=[admin_guard(settings)])
