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
    TooManyRequestsException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap

from serving.http.request_ids import request_id
from serving.model.service import ModelUnavailable

logger = logging.getLogger("serving.errors")
# What Litestar's multipart parser says (as a 400) when a part count or header size limit is hit.
MULTIPART_LIMIT_DETAIL = "Request Entity Too Large"


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


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def exception_handlers(
    max_body_bytes: int, retry_after_seconds: float, on_error: Callable[[ApiError], None] | None = None
) -> ExceptionHandlersMap:
    """Handlers mapping our errors, Litestar's own exceptions and any bug onto the error shape.

    Args:
        max_body_bytes: the body limit, quoted in 413 answers.
        retry_after_seconds: ``Retry-After`` of 503 answers while no model is loaded.
        on_error: called with every error answered (metrics).
    """

    def _response(request: Request, error: ApiError) -> Response:
        if on_error is not None:
            on_error(error)
        body = error.body(request_id(request.scope))
        return Response(content=body, status_code=error.status, headers=error.headers)

    def api_error(request: Request, exc: ApiError) -> Response:
        return _response(request, exc)

    def model_unavailable(request: Request, exc: ModelUnavailable) -> Response:
        headers = {"Retry-After": str(max(1, round(retry_after_seconds)))}
        return _response(request, ApiError(503, "model_unavailable", str(exc), headers=headers))

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
        message = f"{request.method} is not allowed on {request.url.path}"
        if allowed:
            message += f"; allowed: {allowed}"
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
        if status == 400 and exc.detail == MULTIPART_LIMIT_DETAIL:
            message = (
                "the multipart body exceeds a parser limit (too many parts, or part headers such as the "
                "filename too long)"
            )
            return _response(request, ApiError(400, "multipart_limit", message))
        if status >= 500:
            logger.error("server error: %s", exc.detail, extra={"request_id": request_id(request.scope)})
        return _response(request, ApiError(status, _code_for(status), exc.detail, headers=exc.headers))

    def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            extra={"request_id": request_id(request.scope)},
        )
        message = "unexpected server error; quote the request_id when reporting it"
        return _response(request, ApiError(500, "internal_error", message))

    handlers: dict[type[Exception], Callable[[Request, Any], Response]] = {
        ApiError: api_error,
        ModelUnavailable: model_unavailable,
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
