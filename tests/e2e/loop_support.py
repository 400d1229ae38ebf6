"""Traffic and labels for the learning-loop test (imported as a module: tests/e2e is on sys.path).

A region's camera at night: images of the synthetic generator under ``night``, sent to the app
in batches; the client knows what each image really showed (the generator's labels) and says so
through the feedback API, a reviewer through the review API.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from litestar.testing import AsyncTestClient
from PIL import Image

ATTRIBUTES = ("vehicle_type", "color")
BATCH = "/api/vehicle/classify-batch"
FEEDBACK = "/api/vehicle/feedback"
QUEUE = "/api/labels/queue"
PER_REQUEST = 25


def night(image: Image.Image, seed: int) -> Image.Image:
    """A street camera after dark: 15% of the light, a blue cast, and sensor noise.

    Darkness alone does not hurt: the featurizer's grey world and levels undo it (a champion
    trained on daylight images keeps its accuracy on images at 30% brightness). What they
    cannot undo is the noise, which levels amplify about sixfold along with the signal.
    """
    pixels = np.asarray(image.convert("RGB"), np.float32) * 0.15 * np.array([0.85, 0.95, 1.2], np.float32)
    pixels += np.random.default_rng(seed).standard_normal(pixels.shape).astype(np.float32) * 6.0
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class Traffic:
    """Images a region sends, as PNG bytes, and what each really shows."""

    blobs: list[bytes]
    truth: list[dict[str, str]]


def traffic(root: Path, rows: slice, after_dark: bool) -> Traffic:
    """Rows ``rows`` of the generated set in ``root``, under ``night`` when ``after_dark``."""
    frame = pd.read_csv(root / "labels.csv").iloc[rows]
    blobs = []
    for index, name in zip(frame.index, frame["image"], strict=True):
        with Image.open(root / name) as opened:
            image = night(opened, seed=int(index)) if after_dark else opened.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
    return Traffic(blobs, frame[list(ATTRIBUTES)].astype(str).to_dict("records"))


@dataclass(frozen=True)
class Answered:
    """What the app answered for each image: the id feedback names, the version, the labels."""

    item_ids: list[str]
    versions: list[str]
    predicted: list[dict[str, str]]

    def rows(self, rows: slice) -> Answered:
        return Answered(self.item_ids[rows], self.versions[rows], self.predicted[rows])


async def send(client: AsyncTestClient, sent: Traffic, region: str, headers: dict[str, str]) -> Answered:
    """Classifies every image of ``sent`` as ``region``, ``PER_REQUEST`` images a request."""
    ids, versions, predicted = [], [], []
    for start in range(0, len(sent.blobs), PER_REQUEST):
        part = sent.blobs[start : start + PER_REQUEST]
        files = [("files", (f"{start + i}.png", blob, "image/png")) for i, blob in enumerate(part)]
        response = await client.post(BATCH, files=files, headers={**headers, "X-Region": region})
        assert response.status_code == 200, response.text
        body = response.json()
        for item in body["results"]:
            ids.append(f"{body['request_id']}:{item['index']}")
            versions.append(body["model"]["version"])
            predicted.append({a: item["predictions"][a]["label"] for a in ATTRIBUTES})
    return Answered(ids, versions, predicted)


async def give_feedback(
    client: AsyncTestClient, answered: Answered, truth: list[dict[str, str]], headers: dict[str, str]
) -> list[dict]:
    """The client's labels for each answer; returns the app's replies (all 200)."""
    replies = []
    for item_id, labels in zip(answered.item_ids, truth, strict=True):
        response = await client.post(FEEDBACK, json={"request_id": item_id, "labels": labels}, headers=headers)
        assert response.status_code == 200, response.text
        replies.append(response.json())
    return replies


async def review(
    client: AsyncTestClient, answered: Answered, truth: list[dict[str, str]], headers: dict[str, str]
) -> dict[str, int]:
    """A reviewer confirms each right guess and corrects each wrong one; returns the count of each."""
    done = {"confirm": 0, "correct": 0}
    for item_id, guess, labels in zip(answered.item_ids, answered.predicted, truth, strict=True):
        action = {"action": "confirm"} if guess == labels else {"action": "correct", "labels": labels}
        response = await client.post(f"/api/labels/{item_id}", json=action, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "created", response.text
        done[action["action"]] += 1
    return done


async def wait_until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """Polls ``check`` until it returns something truthy (the app writes after answering, on a thread)."""
    last = None
    for _ in range(int(timeout / 0.1)):
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not seen within {timeout} s (last: {last!r})")
