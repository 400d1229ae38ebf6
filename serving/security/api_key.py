"""The admin API key: ``/admin/*`` needs ``X-API-Key`` equal to ``API_KEY`` when one is set.

With no key, admin answers only requests that arrived on a loopback address, unless
``ADMIN_OPEN`` explicitly allows everyone: an app bound to 0.0.0.0 without a key never
hands reloads to the network by accident.
"""

from __future__ import annotations

import hmac
import ipaddress

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from serving.http.errors import ApiError
from serving.settings import ServingSettings

API_KEY_HEADER = "X-API-Key"


def api_key_guard(api_key: str | None) -> Guard:
    """A guard requiring ``X-API-Key`` to equal ``api_key``; no check when ``api_key`` is None."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # async: no worker thread
        if api_key is None:
            return
        sent = connection.headers.get(API_KEY_HEADER)
        if not sent:
            raise ApiError(401, "missing_api_key", f"this endpoint needs the {API_KEY_HEADER} header")
        if not hmac.compare_digest(sent.encode(), api_key.encode()):
            raise ApiError(403, "invalid_api_key", f"the {API_KEY_HEADER} header does not match the configured key")

    return guard


def admin_guard(settings: ServingSettings) -> Guard:
    """The guard of ``/admin/*``: the API key when set, else loopback only (or ``ADMIN_OPEN``)."""
    if settings.api_key is not None:
        return api_key_guard(settings.api_key.get_secret_value())
    if settings.admin_open:
        return api_key_guard(None)

    async def loopback_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        # The local address the request arrived on, as the server reports it.
        address = arrived_on(connection)
        if address is not None and not address.is_loopback:
            raise ApiError(
                403,
                "admin_disabled",
                "admin endpoints answer only on loopback while no API_KEY is set; set API_KEY "
                "(or ADMIN_OPEN=true to allow any caller without a key)",
            )

    return loopback_only


def arrived_on(connection: ASGIConnection) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The server-side IP of the connection; None when the server gives no IP (in-process calls)."""
    host = (connection.scope.get("server") or ("",))[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
