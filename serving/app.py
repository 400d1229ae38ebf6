"""The Litestar app: ``create_app(settings)`` wires services, routes, middleware and docs.

Nothing happens at import. ``create_app`` builds objects only; the lifespan configures
logging, probes Redis and loads the model (and undoes all that on shutdown).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.prometheus import PrometheusConfig
from litestar.template import TemplateConfig

from serving.deps import API_KEY_HEADER, api_key_guard, dependencies
from serving.errors import ApiError, exception_handlers
from serving.logs import (
    REQUEST_ID_HEADER,
    AccessLogMiddleware,
    add_request_id_header,
    configure_logging,
    stop_logging,
)
from serving.model_service import ModelService
from serving.ratelimit import RATE_LIMIT_STORE, rate_limit_config
from serving.routes.stats import StatsController
from serving.routes.system import SKIP_RATE_LIMIT, health, index, metadata, metrics, ready, reload
from serving.routes.vehicle import VehicleController
from serving.services import Services, build_services
from serving.settings import ServingSettings, get_settings

TEMPLATES = Path(__file__).parent / "templates"
API_VERSION = "1.0.0"


def create_app(settings: ServingSettings, model_service: ModelService | None = None) -> Litestar:
    """Builds the serving app.

    Args:
        settings: the process settings.
        model_service: a ready-made model service (tests hand one holding a small model);
            by default one following ``MODEL_NAME@MODEL_ALIAS`` in the registry is built.
    """
    services = build_services(settings, model_service)
    middleware = [AccessLogMiddleware(), _prometheus().middleware]
    if settings.rate_limit_per_minute:
        middleware.append(rate_limit_config(settings.rate_limit_per_minute, SKIP_RATE_LIMIT).middleware)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    return Litestar(
        route_handlers=[
            VehicleController,
            StatsController,
            health,
            ready,
            metadata,
            metrics,
            index,
            Router("/admin", route_handlers=[reload], guards=[api_key_guard(api_key)]),
        ],
        dependencies=dependencies(services),
        lifespan=[_lifespan(services)],
        stores={RATE_LIMIT_STORE: services.rate_limit_store},
        middleware=middleware,
        before_send=[add_request_id_header],
        exception_handlers=exception_handlers(
            settings.max_body_bytes, settings.poll_interval_seconds, on_error=_count_error(services)
        ),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Vehicle classification API",
            version=API_VERSION,
            description="Classifies vehicle photos (type and colour) with the registry's champion model.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
        ),
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        cors_config=_cors(settings),
        logging_config=None,
        debug=False,
    )


def app_factory() -> Litestar:
    """Factory for ``uvicorn --factory serving.app:app_factory`` (settings from the environment)."""
    return create_app(get_settings())


def _lifespan(services: Services) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        listener = configure_logging(services.settings.log_dir, services.settings.log_level)
        try:
            await services.start()
            yield
        finally:
            await services.stop()
            stop_logging(listener)

    return lifespan


def _prometheus() -> PrometheusConfig:
    # Route templates, not raw paths, as labels: report ids must not explode the series count.
    return PrometheusConfig(app_name="vehicle-serving", prefix="litestar", group_path=True, exclude=["^/metrics"])


def _count_error(services: Services) -> Callable[[ApiError], None]:
    def count(error: ApiError) -> None:
        services.metrics.errors.labels(str(error.status), error.code).inc()

    return count


def _cors(settings: ServingSettings) -> CORSConfig | None:
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "X-Region", API_KEY_HEADER, REQUEST_ID_HEADER],
        expose_headers=[
            REQUEST_ID_HEADER, "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"
        ],
    )
