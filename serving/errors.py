"""One JSON error shape for every rejection, and the exception handlers that produce it.

Every error body is ``{"error": {"status", "code", "message", "request_id", ...details}}``.
Client faults map to 4xx with a message saying what is accepted; only a bug gives a 500,
and its body carries the request id but never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    RequestEntityTooLarge,
    TooManyRequestsException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

from serving.logs import request_id

logger = logging.getLogger("serving.errors")


class ApiError(Exception):
    """A rejection with its HTTP status, a machine-readable code and a human message.

    Args:
        status: the HTTP status.
        code: stable short code clients can branch on (``unsupported_format``, ...).
        message: what was wrong and what is accepted.
        headers: extra response headers.
        details: more JSON-able fields for the error body (``accepted``, ``limit_bytes``, ...).
    """

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON error body."""
        return {
            "error": {
                "status": self.status,
                "code": self.code,
                "message": self.message,
                **self.details,
                "request_id": request_id,
            }
        }


def _response(request: Request, error: ApiError) -> Response:
    return Response(content=error.body(request_id(request.scope)), status_code=error.status, headers=error.headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def exception_handlers(max_body_bytes: int) -> ExceptionHandlersMap:
    """Handlers mapping Litestar's own exceptions and any bug onto the error shape."""

    def api_error(request: Request, exc: ApiError) -> Response:
        return _response(request, exc)

    def validation(request: Request, exc: ValidationException) -> Response:
        problems = exc.extra if isinstance(exc.extra, list) else []
        message = "; ".join(_describe(p) for p in problems) or exc.detail
        return _response(request, ApiError(400, "invalid_request", message, problems=problems))

    def not_found(request: Request, exc: NotFoundException) -> Response:
        return _response(
            request, ApiError(404, "not_found", f"no route {request.method} {request.url.path}; see /docs")
        )

    def method_not_allowed(request: Request, exc: MethodNotAllowedException) -> Response:
        allowed = (exc.headers or {}).get("allow", "")
        message = f"{request.method} is not allowed on {request.url.path}" + (f"; allowed: {allowed}" if allowed else "")
        return _response(request, ApiError(405, "method_not_allowed", message, headers=exc.headers))

    def too_large(request: Request, exc: RequestEntityTooLarge) -> Response:
        message = f"the request body exceeds the limit of {max_body_bytes} bytes"
        return _response(request, ApiError(413, "body_too_large", message, limit_bytes=max_body_bytes))

    def rate_limited(request: Request, exc: TooManyRequestsException) -> Response:
        headers = dict(exc.headers or {})
        if reset := headers.get("RateLimit-Reset"):
            headers["Retry-After"] = reset
        message = "too many requests from this client; retry after the number of seconds in Retry-After"
        return _response(request, ApiError(429, "rate_limited", message, headers=headers))

    def http_exception(request: Request, exc: HTTPException) -> Response:
        status = exc.status_code
        if status >= 500:
            logger.error("server error: %s", exc.detail, extra={"request_id": request_id(request.scope)})
        return _response(request, ApiError(status, _code_for(status), exc.detail, headers=exc.headers))

    def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path,
                         extra={"request_id": request_id(request.scope)})
        message = "unexpected server error; quote the request_id when reporting it"
        return _response(request, ApiError(500, "internal_error", message))

    handlers: dict[type[Exception], Callable[[Request, Any], Response]] = {
        ApiError: api_error,
        ValidationException: validation,
        NotFoundException: not_found,
        MethodNotAllowedException: method_not_allowed,
        RequestEntityTooLarge: too_large,
        TooManyRequestsException: rate_limited,
        HTTPException: http_exception,
        Exception: unexpected,
    }
    return handlers  # type: ignore[return-value]


def _describe(problem: object) -> str:
    if isinstance(problem, Mapping):
        key, source, message = problem.get("key"), problem.get("source"), problem.get("message", "")
        where = " ".join(str(part) for part in (source, key) if part)
        return f"{where}: {message}" if where else str(message)
    return str(problem)
