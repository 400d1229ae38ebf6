"""The request id: taken from a well-formed client ``X-Request-ID`` or generated, echoed on every response."""

from __future__ import annotations

import re
import uuid

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STATE_KEY = "request_id"


def request_id(scope: Scope) -> str:
    """The request's id: the client's ``X-Request-ID`` when well-formed, else a new one.

    Stored in the scope on first use, so the error handlers, the access log and the response
    header all agree even for requests that never reach a route.
    """
    state = scope.setdefault("state", {})
    if (existing := state.get(_STATE_KEY)) is not None:
        return existing
    incoming = next(
        (value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-request-id"), ""
    )
    state[_STATE_KEY] = incoming if _CLIENT_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    return state[_STATE_KEY]


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """``before_send`` hook: echoes the request id on every HTTP response."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id(scope)
