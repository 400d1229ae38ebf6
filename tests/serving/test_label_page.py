"""A reviewer's path through the /label page, in a real headless Chromium, driven from the keyboard."""

from __future__ import annotations

import time

import httpx
import pytest
from browser import Browser
from serving_helpers import CLASSIFY, running_server, unique_png

from feedback.store import LabelStore
from serving.app import create_app
from serving.model.service import ModelService

pytestmark = [pytest.mark.serving, pytest.mark.browser]

# What Chromium's DevTools needs to type one key: the DOM key, its code and its Windows key code.
KEYS = {
    "Enter": {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13},
    "2": {"key": "2", "code": "Digit2", "text": "2", "windowsVirtualKeyCode": 50},
    "x": {"key": "x", "code": "KeyX", "text": "x", "windowsVirtualKeyCode": 88},
}
SHOWN = "document.querySelector('#item').dataset.itemId"


def press(browser: Browser, key: str) -> None:
    browser.call("Input.dispatchKeyEvent", type="keyDown", **KEYS[key])
    browser.call("Input.dispatchKeyEvent", type="keyUp", **{k: v for k, v in KEYS[key].items() if k != "text"})


def queue(base_url: str) -> dict:
    return httpx.get(f"{base_url}/api/labels/queue").json()


def test_the_review_page_confirms_corrects_and_rejects_from_the_keyboard(make_settings, small_model):
    settings = make_settings(review_uniform_share=1.0)
    app = create_app(settings, model_service=ModelService(None, small_model))
    with running_server(app) as base_url:
        for seed in range(3):
            httpx.post(f"{base_url}{CLASSIFY}", content=unique_png(seed), headers={"Content-Type": "image/png"})
        deadline = time.monotonic() + 30
        while len(queue(base_url)["items"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # kept images are written on a thread after the answers
        items = {item["item_id"]: item for item in queue(base_url)["items"]}
        browser = Browser()
        try:
            browser.open(f"{base_url}/label")
            browser.wait_until(f"{SHOWN} !== undefined")
            first = browser.evaluate(SHOWN)
            browser.wait_until("document.querySelector('#image').naturalWidth > 0")  # the kept image, shown
            status_before = browser.evaluate("document.querySelector('#status').textContent")
            press(browser, "Enter")  # nothing chosen: the model's guess is confirmed
            browser.wait_until(f"{SHOWN} !== {first!r}")
            second = browser.evaluate(SHOWN)
            attribute = browser.evaluate("document.querySelector('.attribute.active').dataset.attribute")
            press(browser, "2")  # the second most probable class of the highlighted attribute
            chosen = browser.evaluate(
                "document.querySelector('.attribute[data-attribute] button.chosen').dataset.label"
            )
            press(browser, "Enter")
            browser.wait_until(f"{SHOWN} !== {second!r}")
            third = browser.evaluate(SHOWN)
            status_after = browser.evaluate("document.querySelector('#status').textContent")
            press(browser, "x")  # not a vehicle / unusable
            browser.wait_until("document.querySelector('#status').textContent === 'Nothing left to review.'")
        finally:
            browser.close()
        left = queue(base_url)

    assert {first, second, third} == set(items)
    assert status_before == "3 waiting" and status_after == "1 waiting" and left["items"] == []
    assert chosen == items[second]["classes"][attribute][1]
    store = LabelStore(settings.labels_database_url)
    try:
        confirmed, corrected, rejected = store.label(first), store.label(second), store.label(third)
    finally:
        store.close()
    assert confirmed.labels == {a: p["label"] for a, p in items[first]["predictions"].items()}
    assert (
        corrected.labels[attribute] == chosen
        and corrected.labels[attribute] != items[second]["predictions"][attribute]["label"]
    )
    assert rejected is None
