"""A deadline for receiving a request body, which uvicorn does not have.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but waits forever for a
body that is trickled or never finished. Uploads are read on the event loop before anything is
handed to the inference pool, so a slow client never holds an inference thread; without a
deadline it would still hold its connection and buffered parts indefinitely. Here the whole
body gets ``timeout_seconds`` from the moment the app sees the request's headers: a body not
complete by then is refused with 408 ``body_timeout`` (a total deadline, so a trickle of one
byte at a time does not extend it). A client that disconnects mid-body ends as 400
``upload_aborted`` in the log and metrics (it is gone, so nobody reads the answer) instead of
Litestar's 500.
"""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from serving.http.errors import ApiError


class BodyDeadlineMiddleware(ASGIMiddleware):
    """Refuses a request whose body is not complete ``timeout_seconds`` after its headers."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        deadline = asyncio.get_running_loop().time() + self.timeout_seconds
        body_complete = False

        async def receive_before_deadline() -> Message:
            nonlocal body_complete
            if body_complete:  # later receives only wait for a disconnect: no deadline
                return await receive()
            try:
                # A timeout scope, not wait_for: no task is created per message received.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise ApiError(
                    408,
                    "body_timeout",
                    f"the request body was not complete within {self.timeout_seconds:g} s of its headers; "
                    "send it faster, or fewer or smaller files per request",
                ) from None
            if message["type"] == "http.disconnect":
                body_complete = True
                raise ApiError(400, "upload_aborted", "the client disconnected before the request body was complete")
            body_complete = not message.get("more_body", False)
            return message

        await next_app(scope, receive_before_deadline, send)
