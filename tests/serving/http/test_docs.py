"""The docs page links only to files the app itself serves, with the types browsers require."""

from __future__ import annotations

import re

import pytest
from litestar.testing import AsyncTestClient

from serving.app import create_app

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

# With X-Content-Type-Options: nosniff a browser refuses a script or style sheet of another type.
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


async def test_docs_page_needs_nothing_from_outside_the_app(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        page = await client.get("/docs")
        links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assets = {link: await client.get(link) for link in links}

    assert page.status_code == 200
    assert not re.search(r"https?://", page.text), re.findall(r"https?://\S+", page.text)
    assert sorted(links) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui-standalone-preset.js",
        "/docs/assets/swagger-ui.css",
    ]
    for link, response in assets.items():
        assert response.status_code == 200, link
        assert response.headers["content-type"].startswith(CONTENT_TYPES[link[link.rindex(".") :]]), link
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content
