"""CORS: off unless ``CORS_ORIGINS`` lists origins; then only the app's own headers cross.

Litestar answers a request from an origin it does not allow with its other CORS headers
(allowed methods, headers, exposed headers); ``strip_foreign_cors`` removes them, so an origin
that is not listed learns nothing about the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from serving.http.request_ids import REQUEST_ID_HEADER
from serving.security.api_key import API_KEY_HEADER
from serving.settings import ServingSettings


def cors_config(settings: ServingSettings) -> CORSConfig | None:
    """The CORS config for ``settings.cors_origins``; None (CORS off) when there are none."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-Region", API_KEY_HEADER, REQUEST_ID_HEADER],
        expose_headers=[REQUEST_ID_HEADER, "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"],
    )


def strip_foreign_cors(settings: ServingSettings) -> Callable[[Message, Scope], Awaitable[None]]:
    """``before_send`` hook: no ``Access-Control-*`` header for an origin that is not allowed."""
    allowed = {origin.encode() for origin in settings.cors_origins}

    async def strip(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        origin = next((value for name, value in scope.get("headers", []) if name == b"origin"), None)
        if origin is None or origin in allowed:
            return
        headers = MutableScopeHeaders.from_message(message)
        for name in [name for name in headers.keys() if name.lower().startswith("access-control-")]:
            del headers[name]

    return strip
