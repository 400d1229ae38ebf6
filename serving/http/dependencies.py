"""Dependency providers: the services and the request's region, injected by name."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.di import Provide
from litestar.params import HeaderParameter

from serving.http.errors import ApiError
from serving.monitoring.region_stats import DEFAULT_REGION, REGION_PATTERN
from serving.wiring import Services

REGION_RULE = "1-32 characters from A-Z, a-z, 0-9, '_' and '-'"
# Documented in the schema, checked by ``valid_region`` (so the error says ``invalid_region``).
REGION_SCHEMA = {"pattern": REGION_PATTERN.pattern}


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
        HeaderParameter(
            name="X-Region",
            description=f"Caller's region ({REGION_RULE}); absent or empty means '{DEFAULT_REGION}'.",
            schema_extra={"pattern": "^([A-Za-z0-9_-]{1,32})?$"},
        ),
    ] = None,
) -> str:
    """The caller's region from ``X-Region`` (``unknown`` when absent or empty), validated."""
    region = valid_region(x_region) if x_region else DEFAULT_REGION
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
        "learning": constant(services.learning),
        "caller_region": Provide(provide_region, sync_to_thread=False),
    }
