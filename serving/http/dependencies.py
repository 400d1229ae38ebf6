"""Dependency providers: the services and the request's region, injected by name."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import HeaderParameter
from litestar.types import Guard

from serving.errors import ApiError
from serving.services import Services
from serving.stats import DEFAULT_REGION, REGION_PATTERN

REGION_RULE = "1-32 characters from A-Z, a-z, 0-9, '_' and '-'"
API_KEY_HEADER = "X-API-Key"


def valid_region(region: str) -> str:
    """``region`` if it is a well-formed region name.

    Raises:
        ApiError: 400 otherwise.
    """
    if not REGION_PATTERN.match(region):
        raise ApiError(400, "invalid_region", f"invalid region; expected {REGION_RULE}")
    return region


def provide_region(
    request: Request,
    x_region: Annotated[
        str | None,
        HeaderParameter(name="X-Region", description=f"Caller's region ({REGION_RULE}); default 'unknown'."),
    ] = None,
) -> str:
    """The caller's region from ``X-Region`` (``unknown`` when absent), validated."""
    region = valid_region(x_region) if x_region is not None else DEFAULT_REGION
    request.scope["state"]["region"] = region
    return region


def dependencies(services: Services) -> dict[str, Provide]:
    """Name -> provider for everything handlers declare with ``NamedDependency``."""

    def constant(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    return {
        "settings": constant(services.settings),
        "services": constant(services),
        "models": constant(services.models),
        "predictor": constant(services.predictor),
        "reports": constant(services.reports),
        "stats": constant(services.stats),
        "caller_region": Provide(provide_region, sync_to_thread=False),
    }


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
