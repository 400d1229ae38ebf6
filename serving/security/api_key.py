"""The admin API key: ``/admin/*`` needs ``X-API-Key`` equal to ``API_KEY`` when one is set."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from serving.http.errors import ApiError
from serving.settings import ServingSettings

API_KEY_HEADER = "X-API-Key"


def api_key_guard(api_key: str | None) -> Guard:
    """A guard requiring ``X-API-Key`` to equal ``api_key``; no check when ``api_key`` is None."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        if api_key is None:
            return
        sent = connection.headers.get(API_KEY_HEADER)
        if not sent:
            raise ApiError(401, "missing_api_key", f"this endpoint needs the {API_KEY_HEADER} header")
        if not hmac.compare_digest(sent.encode(), api_key.encode()):
            raise ApiError(403, "invalid_api_key", f"the {API_KEY_HEADER} header does not match the configured key")

    return guard


def admin_guard(settings: ServingSettings) -> Guard:
    """The guard of ``/admin/*`` for ``settings.api_key`` (unset: open, warned about at start)."""
    return api_key_guard(settings.api_key.get_secret_value() if settings.api_key else None)
