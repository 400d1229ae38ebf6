"""A person's path through the upload page and the API docs, in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import Browser
from serving_helpers import running_server

from serving.app import create_app
from serving.model.service import ModelService

pytestmark = [pytest.mark.serving, pytest.mark.browser]

# The CDN Litestar's default Swagger UI page loads from.
CDN_FILE = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.18.2/swagger-ui.css"


def test_upload_form_shows_the_html_report(make_settings, small_model, tiny_dataset: Path, tmp_path: Path):
    image = sorted((tiny_dataset / "images").glob("*.jpg"))[0]
    expected = small_model.classifier.predict_bytes([image.read_bytes()])[0]
    app = create_app(make_settings(), model_service=ModelService(None, small_model))
    with running_server(app) as base_url:
        browser = Browser()
        try:
            browser.open(f"{base_url}/")
            assert browser.evaluate("document.querySelector('h1').textContent") == "Vehicle classifier"
            browser.set_file("input[type=file]", image)
            browser.evaluate("document.querySelector('input[name=vehicle_id]').value = 'browser-car-1'")
            browser.evaluate("document.querySelector('form').requestSubmit()")
            browser.wait_for("Page.loadEventFired")
            url = browser.evaluate("location.href")
            heading = browser.evaluate("document.querySelector('h1').textContent")
            headings = browser.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent.trim())")
        finally:
            browser.close()

    assert url == f"{base_url}/api/vehicle/report"
    assert heading == "Vehicle report browser-car-1"
    for attribute, result in expected.items():
        assert any(h.startswith(f"{attribute}: {result['label']}") for h in headings), headings


def test_docs_list_the_operations_with_the_internet_cut(make_settings):
    app = create_app(make_settings())
    with running_server(app) as base_url:
        browser = Browser()
        try:
            browser.call("Network.enable")
            browser.open(f"{base_url}/docs")
            browser.wait_until("document.querySelectorAll('.opblock').length > 0")
            paths = browser.evaluate("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent)")
            summaries = browser.evaluate(
                "[...document.querySelectorAll('.opblock-summary-description')].map(e => e.textContent)"
            )
            requested = browser.requested_urls()
            outside = browser.call("Page.navigate", url=CDN_FILE)
        finally:
            browser.close()

    # The cut is real: an outside URL went to the dead proxy (not merely to a missing DNS).
    assert outside.get("errorText") == "net::ERR_PROXY_CONNECTION_FAILED", outside
    assert "/api/vehicle/classify" in paths and "/api/vehicle/report/{vehicle_id}" in paths, paths
    assert "Classify" in summaries, summaries
    assert f"{base_url}/docs/assets/swagger-ui-bundle.js" in requested
    assert all(url.startswith((f"{base_url}/", "data:")) for url in requested), requested
