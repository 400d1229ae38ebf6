"""Per-client rate limiting with Litestar's ``RateLimitConfig`` over the degraded-safe store.

Public routes (probes, scrapes, the upload page) declare ``opt=PUBLIC``; the docs are exempt
by path. That is the whole exemption list.
"""

from __future__ import annotations

from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig, RateLimitMiddleware
from litestar.types import Middleware, Receive, Scope, Send

from serving.settings import ServingSettings

RATE_LIMIT_STORE = "rate_limit"
SKIP_RATE_LIMIT = "skip_rate_limit"
# ``opt`` of the routes exempt from the rate limit (``RateLimitConfig.exclude_opt_key``).
PUBLIC = {SKIP_RATE_LIMIT: True}


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


def rate_limit_middleware(settings: ServingSettings) -> list[Middleware]:
    """The rate-limit middleware for ``settings``: none when ``RATE_LIMIT_PER_MINUTE`` is 0."""
    if not settings.rate_limit_per_minute:
        return []
    return [rate_limit_config(settings.rate_limit_per_minute).middleware]


def rate_limit_config(per_minute: int) -> RateLimitConfig:
    """``per_minute`` requests per client address; ``PUBLIC`` routes and the docs are exempt."""
    return RateLimitConfig(
        rate_limit=("minute", per_minute),
        exclude=["^/docs"],
        exclude_opt_key=SKIP_RATE_LIMIT,
        middleware_class=AnsweringRateLimitMiddleware,
        store=RATE_LIMIT_STORE,
    )
