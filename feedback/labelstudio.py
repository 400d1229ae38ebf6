"""Label Studio's formats, for teams that label there: tasks to import, annotations to read back.

Each task carries the item's id in ``data.item_id`` and the model's answer as a prediction
(one ``choices`` result per attribute, ``from_name`` the attribute, ``to_name`` ``image``), so
Label Studio shows the guess pre-filled and can sort by its ``score`` (the lowest top
probability over the attributes: the least sure first). ``labeling_config`` writes the
matching project configuration. Annotations come back from Label Studio's JSON export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from feedback.items import KeptItem

IMAGE = "image"


def export_tasks(items: Iterable[KeptItem], image_url: str) -> list[dict]:
    """Label Studio import JSON: one task per item, with the model's answer as its prediction.

    Args:
        items: the items to label (usually the review queue).
        image_url: where Label Studio fetches each image, a template with ``{item_id}`` (URL
            quoted) and/or ``{sha}``, e.g. ``http://host:8000/api/labels/{item_id}/image``.
    """
    return [
        {
            "data": {
                IMAGE: image_url.format(item_id=quote(item.item_id, safe=""), sha=item.image_sha),
                "item_id": item.item_id,
                "region": item.region,
            },
            "predictions": [
                {
                    "model_version": f"{item.model}/{item.version}",
                    "score": min(float(r["probability"]) for r in item.predictions.values()),
                    "result": [
                        {"from_name": attribute, "to_name": IMAGE, "type": "choices", "value": {"choices": [label]}}
                        for attribute, label in item.labels.items()
                    ],
                }
            ],
        }
        for item in items
    ]


def labeling_config(classes: Mapping[str, Sequence[str]]) -> str:
    """The Label Studio labeling configuration the exported tasks fit: the image and one
    single-choice question per attribute."""
    lines = ["<View>", f'  <Image name="{IMAGE}" value="${IMAGE}"/>']
    for attribute, names in classes.items():
        lines.append(f"  <Header value={quoteattr(attribute)}/>")
        lines.append(f'  <Choices name={quoteattr(attribute)} toName="{IMAGE}" choice="single" showInline="true">')
        lines.extend(f"    <Choice value={quoteattr(name)}/>" for name in names)
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def read_annotations(export: str | bytes | list) -> dict[str, dict[str, str]]:
    """item_id -> labels from a Label Studio JSON export of exported tasks.

    A task's latest annotation that was not cancelled counts; tasks without one are left out.

    Raises:
        ValueError: a task lacks ``data.item_id``, or an answer selects other than one choice.
    """
    tasks = json.loads(export) if isinstance(export, str | bytes) else export
    if not isinstance(tasks, list):
        raise ValueError("a Label Studio JSON export is a list of tasks")
    labels: dict[str, dict[str, str]] = {}
    for task in tasks:
        item_id = (task.get("data") or {}).get("item_id")
        if not item_id:
            raise ValueError(f"task {task.get('id')} has no data.item_id: it was not exported by `vehicles labels`")
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not done:
            continue
        latest = max(done, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        labels[item_id] = _choices(item_id, latest.get("result") or [])
    return {item_id: given for item_id, given in labels.items() if given}


def _choices(item_id: str, result: list[dict]) -> dict[str, str]:
    given = {}
    for answer in result:
        if answer.get("type") != "choices":
            continue
        choices = (answer.get("value") or {}).get("choices") or []
        if len(choices) != 1:
            raise ValueError(f"item {item_id}: {answer.get('from_name')} has {len(choices)} choices; expected one")
        given[answer["from_name"]] = str(choices[0])
    return given
