"""Operator actions under ``/admin``, behind the API key."""

from __future__ import annotations

import asyncio

from litestar import Router, post
from litestar.di import NamedDependency

from serving.http.errors import ApiError
from serving.http.schemas import ReloadBody, error_responses
from serving.model.service import ModelService
from serving.security.api_key import admin_guard
from serving.settings import ServingSettings


@post("/reload", status_code=200, tags=["admin"], responses=error_responses(401, 403, 409, 504))
async def reload(models: NamedDependency[ModelService], settings: NamedDependency[ServingSettings]) -> ReloadBody:
    """Checks the alias now (retrying a version that failed); needs ``X-API-Key`` when a key is set.

    Waits at most ``RELOAD_TIMEOUT_SECONDS``: a slower download or warm-up goes on in the
    background (the old version keeps serving) and the answer is 504 ``reload_pending``.
    """
    if models.source is None:
        raise ApiError(409, "no_registry", "this app serves a fixed model; there is no registry to reload from")
    try:
        result = await asyncio.wait_for(asyncio.shield(models.refresh(force=True)), settings.reload_timeout_seconds)
    except TimeoutError:
        raise ApiError(
            504,
            "reload_pending",
            f"the reload did not finish within {settings.reload_timeout_seconds:g} s; it goes on in the "
            "background and the current version keeps serving. Check /api/models/metadata later.",
        ) from None
    return {
        "outcome": result.outcome,
        "alias_version": result.version,
        "serving": result.serving,
        "detail": result.detail,
    }


def admin_router(settings: ServingSettings) -> Router:
    """``/admin/*``, guarded by the API key of ``settings``."""
    return Router("/admin", route_handlers=[reload], guards=[admin_guard(settings)])
