"""The API documentation page: Swagger UI whose files the app serves itself.

The stack runs where there is no internet, so the page may link to nothing outside the app:
script, styles and favicon come from the copy of Swagger UI's dist folder that the
``swagger-ui-bundle-v2`` package installs (Swagger UI 5, the first to render OpenAPI 3.1).
"""

from __future__ import annotations

from litestar import Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"


class LocalSwaggerRenderPlugin(SwaggerRenderPlugin):
    """Swagger UI at ``DOCS_PATH``, linking only to its files under ``ASSETS_PATH``."""

    def __init__(self) -> None:
        super().__init__(
            path="/",
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        )

    def receive_router(self, router: Router) -> None:
        """Adds the asset files to the router that serves the page (and its OAuth2 redirect).

        Args:
            router: the OpenAPI router, mounted at ``DOCS_PATH``.
        """
        super().receive_router(router)
        assets = ASSETS_PATH.removeprefix(DOCS_PATH)
        router.register(create_static_files_router(assets, directories=[swagger_ui_path], name="docs_assets"))
