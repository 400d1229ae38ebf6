"""The Litestar app: ``create_app(settings)`` wires services, routes, middleware and docs.

Nothing happens at import. ``create_app`` builds objects only; the lifespan configures
logging, probes Redis and loads the model (and undoes all that on shutdown).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

from serving.http.body_deadline import BodyDeadlineMiddleware
from serving.http.dependencies import dependencies
from serving.http.docs import DOCS_PATH, LocalSwaggerRenderPlugin
from serving.http.errors import ApiError, exception_handlers
from serving.http.request_ids import add_request_id_header
from serving.model.service import ModelService
from serving.monitoring.logs import AccessLogMiddleware, configure_logging, stop_logging
from serving.monitoring.metrics import prometheus_config
from serving.routes.admin import admin_router
from serving.routes.labels import FeedbackController, LabelsController, label_page
from serving.routes.stats import StatsController
from serving.routes.system import health, index, metadata, metrics, ready
from serving.routes.vehicle import VehicleController
from serving.security.clients import client_guard, key_ring, operator_guard
from serving.security.cors import cors_config, strip_foreign_cors
from serving.security.headers import add_security_headers
from serving.security.rate_limit import RATE_LIMIT_STORE, rate_limit_middleware
from serving.security.reviewers import reviewer_guard
from serving.settings import ServingSettings, get_settings
from serving.wiring import Services, build_services

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
    keys = key_ring(settings)
    return Litestar(
        route_handlers=[
            Router("/", route_handlers=[VehicleController, FeedbackController], guards=[client_guard(keys)]),
            Router("/", route_handlers=[StatsController], guards=[operator_guard(keys)]),
            Router("/", route_handlers=[LabelsController, label_page], guards=[reviewer_guard(keys)]),
            health,
            ready,
            metadata,
            metrics,
            index,
            admin_router(settings),
        ],
        dependencies=dependencies(services),
        lifespan=[_lifespan(services)],
        stores={RATE_LIMIT_STORE: services.rate_limit_store},
        middleware=[
            AccessLogMiddleware(),
            prometheus_config().middleware,
            *rate_limit_middleware(settings),
            BodyDeadlineMiddleware(settings.body_timeout_seconds),
        ],
        before_send=[add_request_id_header, add_security_headers, strip_foreign_cors(settings)],
        exception_handlers=exception_handlers(
            settings.max_body_bytes, settings.poll_interval_seconds, on_error=_count_error(services)
        ),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Vehicle classification API",
            version=API_VERSION,
            description="Classifies vehicle photos (type and colour) with the registry's champion model.",
            path=DOCS_PATH,
            render_plugins=[LocalSwaggerRenderPlugin()],
        ),
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        cors_config=cors_config(settings),
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


def _count_error(services: Services) -> Callable[[ApiError], None]:
    def count(error: ApiError) -> None:
        services.metrics.errors.labels(str(error.status), error.code).inc()

    return count
