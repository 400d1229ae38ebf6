"""Labels: client feedback on an answer, the review queue's API and the review page.

``POST /api/vehicle/feedback`` is the client's (client keys, scoped like reports);
``/api/labels/*`` and ``/label`` are the reviewers' (``security/reviewers.py``).
"""

from __future__ import annotations

import io
import re
import secrets
from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Template
from PIL import Image

from feedback.items import QueueItem
from serving.http.dependencies import REGION_RULE, REGION_SCHEMA, valid_region
from serving.http.errors import ApiError
from serving.http.review_schemas import (
    ITEM_ID_PATTERN,
    ITEM_ID_RULE,
    FeedbackRequest,
    FeedbackResponse,
    QueueBody,
    QueueItemBody,
    ReviewRequest,
    ReviewResponse,
)
from serving.http.schemas import error_responses
from serving.learning.receipts import Receipt
from serving.learning.service import LabelStoreUnavailable, LearningLoop, ReusedRequestId
from serving.security.clients import client_name
from serving.storage.stores import RedisUnavailable
from vehicle_model.images import ACCEPTED_FORMATS

REVIEWER = "operator"
ITEM_ID = re.compile(ITEM_ID_PATTERN)
ItemId = Annotated[
    str, PathParameter(description=f"The item: {ITEM_ID_RULE}.", schema_extra={"pattern": ITEM_ID_PATTERN})
]
# The review page runs one script, its own (a nonce per answer); it reads and posts only here.
PAGE_POLICY = (
    "default-src 'none'; script-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self'; "
    "style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class FeedbackController(Controller):
    """What a client's image really showed, joined to the answer it got."""

    path = "/api/vehicle"
    tags = ["vehicle"]

    @post("/feedback", status_code=200, responses=error_responses(400, 401, 404, 409, 422, 429, 503))
    async def feedback(
        self, request: Request, data: JSONBody[FeedbackRequest], learning: NamedDependency[LearningLoop]
    ) -> FeedbackResponse:
        """Labels for an answer this client got, by its ``request_id``, within the feedback window.

        Only the client that asked may label an answer (another client's id is 404, as an unknown
        one). Labels must be classes of the version that answered (422 names them). The same
        labels again are accepted as they are; different ones are 409 unless ``replace`` is true.
        ``trains`` says whether the label can become a training example: the image was kept and
        every attribute is labelled.
        """
        receipt = await _receipt(learning, data.request_id, client_name(request))
        _check_labels(data.labels, receipt)
        try:
            outcome = await learning.give_feedback(receipt, data.labels, data.replace)
        except LabelStoreUnavailable as exc:
            raise _store_unavailable(str(exc), learning.settings.review_refresh_seconds) from None
        except ReusedRequestId:
            raise ApiError(
                409,
                "request_id_reused",
                f"'{data.request_id}' also names an earlier answer kept for review, so it cannot be labelled; "
                "send a fresh X-Request-ID (or none) with each classify request",
            ) from None
        if outcome == "conflict":
            raise ApiError(
                409,
                "label_conflict",
                f"'{data.request_id}' already has different labels; send \"replace\": true to replace them",
            )
        return {
            "request_id": data.request_id,
            "labels": data.labels,
            "status": outcome,
            "kept_image": receipt.kept,
            "trains": receipt.kept and set(receipt.classes) <= set(data.labels),
            "model": {"name": receipt.model, "version": receipt.version},
        }


class LabelsController(Controller):
    """The review queue: kept images waiting for a person, and their decisions."""

    path = "/api/labels"
    tags = ["labels"]

    @get("/queue", responses=error_responses(400, 401, 403, 429, 503))
    async def queue(
        self,
        learning: NamedDependency[LearningLoop],
        region: Annotated[
            str | None, QueryParameter(description=f"Only this region ({REGION_RULE}).", schema_extra=REGION_SCHEMA)
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200, description="Most items listed.")] = 20,
    ) -> QueueBody:
        """Items waiting for review: drifted regions first, then the lowest margin, then the oldest
        (skipped ones last), with the model's guess and the classes to choose from."""
        try:
            items = await learning.queue(valid_region(region) if region is not None else None, limit)
            counts = await learning.counts()
        except LabelStoreUnavailable as exc:
            raise _store_unavailable(str(exc), learning.settings.review_refresh_seconds) from None
        waiting = {name: c["queued"] for name, c in counts.items() if c["queued"]}
        return {
            "items": [_queue_item(item) for item in items],
            "queued": waiting.get(region, 0) if region else sum(waiting.values()),
            "regions": waiting,
            "drifted_regions": sorted(learning.sampler.drifted),
        }

    @get("/{item_id:str}/image", responses=error_responses(400, 401, 403, 404, 429, 503), media_type="image/*")
    async def image(self, item_id: ItemId, learning: NamedDependency[LearningLoop]) -> Response[bytes]:
        """The kept image as the client uploaded it."""
        try:
            data = await learning.image(_valid_item_id(item_id))
        except LabelStoreUnavailable as exc:
            raise _store_unavailable(str(exc), learning.settings.review_refresh_seconds) from None
        if data is None:
            raise _item_not_found(item_id)
        return Response(data, media_type=_media_type(data), headers={"Cache-Control": "private, max-age=3600"})

    @post("/{item_id:str}", status_code=200, responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
    async def review(
        self, item_id: ItemId, data: JSONBody[ReviewRequest], learning: NamedDependency[LearningLoop]
    ) -> ReviewResponse:
        """Confirm the model's guess, correct it, skip the item for now, or reject it as not a
        vehicle or unusable (it is then never trained on)."""
        if data.action != "correct" and data.labels:
            raise ApiError(422, "unexpected_labels", f"labels go with the action 'correct', not '{data.action}'")
        try:
            outcome = await learning.review(_valid_item_id(item_id), data.action, data.labels, REVIEWER)
        except LabelStoreUnavailable as exc:
            raise _store_unavailable(str(exc), learning.settings.review_refresh_seconds) from None
        except KeyError:
            raise _item_not_found(item_id) from None
        except ValueError as exc:
            raise ApiError(422, "invalid_label", str(exc)) from None
        if outcome == "conflict":
            raise ApiError(409, "label_conflict", f"'{item_id}' already has different labels (client feedback)")
        return {"item_id": item_id, "action": data.action, "status": outcome}


@get("/label", include_in_schema=False)
async def label_page() -> Template:
    """The review page: one kept image at a time, driven from the keyboard."""
    nonce = secrets.token_urlsafe(16)
    policy = PAGE_POLICY.format(nonce=nonce)
    return Template("label.html", context={"nonce": nonce}, headers={"Content-Security-Policy": policy})


async def _receipt(learning: LearningLoop, request_id: str, client: str) -> Receipt:
    try:
        receipt = await learning.receipt(request_id, client)
    except RedisUnavailable:
        raise _store_unavailable(
            "the receipt store (Redis) is not answering, so whether this answer exists is unknown",
            learning.settings.redis_retry_after_seconds,
        ) from None
    if receipt is None:
        window = learning.settings.feedback_window_seconds
        raise ApiError(
            404,
            "prediction_not_found",
            f"no answer '{request_id}' to give feedback on: it was never given to this client, or it is "
            f"older than the feedback window ({window} s)"
            if window
            else "feedback is turned off on this server (FEEDBACK_WINDOW_SECONDS=0)",
        )
    return receipt


def _check_labels(labels: dict[str, str], receipt: Receipt) -> None:
    """422 naming what is accepted when an attribute or a class is not the answering version's."""
    for attribute, label in labels.items():
        if attribute not in receipt.classes:
            raise ApiError(
                422,
                "unknown_attribute",
                f"unknown attribute '{attribute}'; version {receipt.version} predicts {sorted(receipt.classes)}",
                accepted=sorted(receipt.classes),
            )
        accepted = receipt.classes[attribute]
        if label not in accepted:
            raise ApiError(
                422,
                "invalid_label",
                f"{attribute} '{label}' is not a class of version {receipt.version}; allowed: {accepted}",
                attribute=attribute,
                accepted=accepted,
            )


def _queue_item(item: QueueItem) -> QueueItemBody:
    return {
        "item_id": item.item_id,
        "time": item.time,
        "region": item.region,
        "model": item.model,
        "version": item.version,
        "predictions": item.predictions,
        "classes": item.classes,
        "margin": item.margin,
        "reasons": list(item.reasons),
        "drifted": item.drifted,
        "skipped": item.skipped,
        "image": f"/api/labels/{item.item_id}/image",
    }


def _media_type(data: bytes) -> str:
    # The bytes decoded once already (they were classified), so the format is one accepted.
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        return image.get_format_mimetype() or "application/octet-stream"


def _valid_item_id(item_id: str) -> str:
    if not ITEM_ID.match(item_id):
        raise ApiError(400, "invalid_item_id", f"invalid item id; expected {ITEM_ID_RULE}")
    return item_id


def _item_not_found(item_id: str) -> ApiError:
    return ApiError(404, "item_not_found", f"no kept item '{item_id}': never kept, or past the retention window")


def _store_unavailable(message: str, retry_after_seconds: float) -> ApiError:
    retry_after = max(1, round(retry_after_seconds))
    return ApiError(
        503, "store_unavailable", f"{message}; retry after {retry_after} s", headers={"Retry-After": str(retry_after)}
    )
