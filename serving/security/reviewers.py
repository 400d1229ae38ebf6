"""Who may review kept images: the operator, or anyone on this machine while no keys are set.

Reviewing shows clients' images, so it is guarded like the stats and admin together: with
client or operator keys configured (the stack) only the operator key opens it; with none (a
local run) it answers only requests that arrived on a loopback address. Browsers cannot add a
bearer header to a page load, so the operator key is also accepted as the password of HTTP
Basic authentication (any user name): the browser asks for it once and sends it with every
request of the page.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from serving.http.errors import ApiError
from serving.security.api_key import arrived_on
from serving.security.clients import KeyRing, bearer, key_digest

CHALLENGE = {"WWW-Authenticate": 'Basic realm="vehicles review", charset="UTF-8", Bearer realm="vehicles"'}
NEEDS_KEY = (
    "reviewing needs the operator key: 'Authorization: Bearer <key>', or as the Basic "
    "authentication password (any user name) in a browser"
)


def reviewer_guard(keys: KeyRing) -> Guard:
    """The guard of ``/label`` and ``/api/labels/*``."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # async: no worker thread
        if keys.operator is None and not keys.enabled:
            address = arrived_on(connection)
            if address is not None and not address.is_loopback:
                raise ApiError(
                    403,
                    "review_disabled",
                    "the review page answers only on loopback while no keys are set; set "
                    "OPERATOR_KEY_SHA256 to review from other machines",
                )
            return
        sent = bearer(connection) or basic_password(connection)
        if sent is None:
            raise ApiError(401, "missing_credentials", NEEDS_KEY, headers=CHALLENGE)
        if keys.operator is None or not hmac.compare_digest(key_digest(sent), keys.operator):
            raise ApiError(401, "invalid_credentials", NEEDS_KEY, headers=CHALLENGE)

    return guard


def basic_password(connection: ASGIConnection) -> str | None:
    """The password of ``Authorization: Basic ...``; None when absent or malformed."""
    scheme, _, encoded = connection.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return (password or None) if colon else None
