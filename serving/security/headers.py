"""Security headers on every response.

Pages (the upload form and HTML reports) get a Content-Security-Policy that allows only their
own inline styles and posting the form to this origin: no script runs, nothing is framed.
Swagger UI under ``/docs`` starts from an inline script, so it keeps Litestar's page without a
policy (its responses still get the other headers).
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def add_security_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: the headers above on every HTTP response."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in ALWAYS.items():
        headers[name] = value
    # A page that sets its own policy keeps it (the review page allows its one nonce'd script).
    if not scope.get("path", "").startswith("/docs") and "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
