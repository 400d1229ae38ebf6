"""Per-client rate limiting with Litestar's ``RateLimitConfig`` over the degraded-safe store."""

from __future__ import annotations

from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig, RateLimitMiddleware
from litestar.types import Receive, Scope, Send

RATE_LIMIT_STORE = "rate_limit"


class AnsweringRateLimitMiddleware(RateLimitMiddleware):
    """Answers a 429 itself (with the app's error handler) instead of raising it.

    Litestar's middleware raises, which only the outermost exception handler catches: the
    request metrics and the access log wrapping this middleware would then never see the 429.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except TooManyRequestsException as exc:
            app = scope["litestar_app"]
            request = app.request_class(scope=scope, receive=receive, send=send)
            response = app.exception_handlers[TooManyRequestsException](request, exc)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)


def rate_limit_config(per_minute: int, exempt_opt_key: str) -> RateLimitConfig:
    """``per_minute`` requests per client address; handlers with ``opt[exempt_opt_key]`` are exempt."""
    return RateLimitConfig(
        rate_limit=("minute", per_minute),
        exclude=["^/docs"],
        exclude_opt_key=exempt_opt_key,
        middleware_class=AnsweringRateLimitMiddleware,
        store=RATE_LIMIT_STORE,
    )
