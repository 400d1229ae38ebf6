"""CORS: off unless ``CORS_ORIGINS`` lists origins; then only the app's own headers cross."""

from __future__ import annotations

from litestar.config.cors import CORSConfig

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
        allow_headers=["Content-Type", "X-Region", API_KEY_HEADER, REQUEST_ID_HEADER],
        expose_headers=[
            REQUEST_ID_HEADER, "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"
        ],
    )
