"""Who is calling: client keys for the API, an operator key for the stats, stored as hashes.

Keys are configured as sha256 hex digests (``CLIENT_KEYS=name:digest,...``,
``OPERATOR_KEY_SHA256=digest``), never in clear and never logged. A client sends its key as
``Authorization: Bearer <key>``; the app hashes what it receives and compares digests in
constant time. With no client keys configured (a local run) every caller is the anonymous
client and client checks are off.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from serving.http.errors import ApiError
from serving.settings import ServingSettings

ANONYMOUS = "anonymous"
CLIENT_STATE = "client"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="vehicles"'}


def key_digest(key: str) -> str:
    """The sha256 hex digest a key is configured as."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """Configured client keys (name -> digest) and the operator key's digest."""

    clients: Mapping[str, str]
    operator: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.clients)

    def client(self, connection: ASGIConnection) -> str:
        """The calling client's name; ``anonymous`` when client keys are off.

        Raises:
            ApiError: 401 when keys are on and the bearer key is missing or unknown.
        """
        if not self.enabled:
            return ANONYMOUS
        name = self._match(bearer(connection), self.clients)
        if name is None:
            raise _unauthorized(connection)
        return name

    def require_operator(self, connection: ASGIConnection) -> None:
        """Stats are operators' business: the operator key, whenever clients need keys."""
        if self.operator is None and not self.enabled:
            return
        sent = bearer(connection)
        if self.operator is None or sent is None or not hmac.compare_digest(key_digest(sent), self.operator):
            raise _unauthorized(connection, "this endpoint needs the operator key as 'Authorization: Bearer <key>'")

    @staticmethod
    def _match(sent: str | None, digests: Mapping[str, str]) -> str | None:
        if not sent:
            return None
        digest = key_digest(sent)
        found = None
        for name, expected in digests.items():  # every entry compared: no early exit to time
            if hmac.compare_digest(digest, expected):
                found = name
        return found


def key_ring(settings: ServingSettings) -> KeyRing:
    return KeyRing(dict(settings.client_keys), settings.operator_key_sha256)


def client_guard(keys: KeyRing) -> Guard:
    """Requires a known client key (when keys are on) and records the client's name."""

    # Guards are coroutines: Litestar runs a plain function guard on a worker thread, a thread
    # handoff per request for a dictionary lookup.
    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        connection.scope["state"][CLIENT_STATE] = keys.client(connection)

    return guard


def operator_guard(keys: KeyRing) -> Guard:
    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        keys.require_operator(connection)

    return guard


def client_name(connection: ASGIConnection) -> str:
    """The client ``client_guard`` recognised on this request (``anonymous`` when keys are off)."""
    return connection.scope["state"].get(CLIENT_STATE, ANONYMOUS)


def bearer(connection: ASGIConnection) -> str | None:
    scheme, _, token = connection.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _unauthorized(connection: ASGIConnection, message: str | None = None) -> ApiError:
    missing = bearer(connection) is None
    code = "missing_credentials" if missing else "invalid_credentials"
    text = message or (
        "this endpoint needs a client key as 'Authorization: Bearer <key>'"
        if missing
        else "the client key is not recognised"
    )
    return ApiError(401, code, text, headers=BEARER_CHALLENGE)
