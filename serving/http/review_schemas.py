"""Shapes of the feedback endpoint and the review API, as they appear in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

import msgspec
from litestar.params import KwargDefinition

from serving.http.schemas import ModelRef

ITEM_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}(:[0-9]{1,6})?$"
ITEM_ID_RULE = "a request id (1-64 characters from A-Z, a-z, 0-9, '.', '_' and '-'), ':<index>' for a batch item"
MAX_ATTRIBUTES = 32


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What a client says its image really showed.

    Attributes:
        request_id: the ``request_id`` classify returned (``<request_id>:<index>`` for a batch item).
        labels: attribute -> the true label; some attributes are enough.
        replace: replace different labels given before (else that is a 409).
    """

    request_id: Annotated[str, msgspec.Meta(pattern=ITEM_ID_PATTERN, description=ITEM_ID_RULE)]
    labels: Annotated[
        dict[str, str],
        msgspec.Meta(min_length=1, max_length=MAX_ATTRIBUTES),
        KwargDefinition(schema_extra={"min_properties": 1, "max_properties": MAX_ATTRIBUTES}),
    ]
    replace: bool = False


class FeedbackResponse(TypedDict):
    request_id: str
    labels: dict[str, str]
    status: Literal["created", "unchanged", "replaced"]
    kept_image: bool
    trains: bool
    model: ModelRef


class ReviewRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A reviewer's decision on a kept item.

    Attributes:
        action: ``confirm`` (the model's guess is right), ``correct`` (``labels`` are),
            ``skip`` (later), ``reject`` (not a vehicle or unusable: never trained on).
        labels: for ``correct``: attribute -> label; attributes left out keep the model's guess.
    """

    action: Literal["confirm", "correct", "skip", "reject"]
    labels: dict[str, str] | None = None


class ReviewResponse(TypedDict):
    item_id: str
    action: str
    status: Literal["created", "unchanged", "replaced", "skipped", "rejected"]


class GuessBody(TypedDict, total=False):
    label: str
    probability: float
    probabilities: dict[str, float]
    decision: str


class QueueItemBody(TypedDict):
    item_id: str
    time: float
    region: str
    model: str
    version: str
    predictions: dict[str, GuessBody]
    classes: dict[str, list[str]]
    margin: dict[str, float]
    reasons: list[str]
    drifted: bool
    skipped: bool
    image: str


class QueueBody(TypedDict):
    items: list[QueueItemBody]
    queued: int
    regions: dict[str, int]
    drifted_regions: list[str]
