"""Label Studio: exported tasks carry the model's answer in its prediction format, the labeling
configuration matches them, and annotations from its JSON export come back as labels."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest

from feedback.items import KeptItem
from feedback.labelstudio import export_tasks, labeling_config, read_annotations

pytestmark = pytest.mark.unit

PREDICTION = {
    "vehicle_type": {"label": "car", "probabilities": {"car": 0.7, "bus": 0.3}},
    "color": {"label": "red", "probabilities": {"red": 0.4, "blue": 0.35, "white": 0.25}},
}


def item(item_id: str = "req-1:0") -> KeptItem:
    return KeptItem.from_prediction(
        item_id,
        PREDICTION,
        time=1,
        region="night",
        client="acme",
        model="vc",
        version="4",
        reasons=(),
        image_sha="f0" * 32,
    )


def annotation(choices: dict[str, list[str]], updated_at: str, cancelled: bool = False) -> dict:
    result = [
        {"from_name": a, "to_name": "image", "type": "choices", "value": {"choices": c}} for a, c in choices.items()
    ]
    return {"id": updated_at, "result": result, "was_cancelled": cancelled, "updated_at": updated_at}


def test_a_task_holds_the_image_url_the_item_id_and_the_models_answer_as_a_prediction() -> None:
    (task,) = export_tasks([item()], "http://host:8000/api/labels/{item_id}/image?sha={sha}")

    assert task["data"] == {
        "image": f"http://host:8000/api/labels/req-1%3A0/image?sha={'f0' * 32}",
        "item_id": "req-1:0",
        "region": "night",
    }
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "vc/4" and prediction["score"] == pytest.approx(0.4)
    assert prediction["result"] == [
        {"from_name": "vehicle_type", "to_name": "image", "type": "choices", "value": {"choices": ["car"]}},
        {"from_name": "color", "to_name": "image", "type": "choices", "value": {"choices": ["red"]}},
    ]
    json.dumps(task)  # import JSON


def test_the_labeling_configuration_names_what_the_predictions_refer_to() -> None:
    config = ElementTree.fromstring(labeling_config(item().classes))

    assert config.find("Image").attrib == {"name": "image", "value": "$image"}
    questions = {c.get("name"): [x.get("value") for x in c.findall("Choice")] for c in config.findall("Choices")}
    assert questions == {"vehicle_type": ["car", "bus"], "color": ["red", "blue", "white"]}
    assert {c.get("toName") for c in config.findall("Choices")} == {"image"}


def test_the_latest_annotation_that_was_not_cancelled_is_read_back_per_item() -> None:
    tasks = export_tasks([item("a"), item("b"), item("c")], "http://h/{item_id}")
    for number, task in enumerate(tasks):
        task["id"] = number
    tasks[0]["annotations"] = [
        annotation({"vehicle_type": ["bus"], "color": ["red"]}, "2026-01-02T00:00:00Z"),
        annotation({"vehicle_type": ["car"], "color": ["red"]}, "2026-01-01T00:00:00Z"),
        annotation({"vehicle_type": ["car"], "color": ["blue"]}, "2026-01-03T00:00:00Z", cancelled=True),
    ]
    tasks[1]["annotations"] = [annotation({"vehicle_type": ["car"]}, "2026-01-01T00:00:00Z")]

    labels = read_annotations(json.dumps(tasks))

    assert labels == {"a": {"vehicle_type": "bus", "color": "red"}, "b": {"vehicle_type": "car"}}


def test_an_export_that_was_not_ours_or_picks_two_classes_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="task 7 has no data.item_id"):
        read_annotations([{"id": 7, "data": {"image": "x"}, "annotations": []}])
    two = {"data": {"item_id": "a"}, "annotations": [annotation({"color": ["red", "blue"]}, "t")]}
    with pytest.raises(ValueError, match="item a: color has 2 choices"):
        read_annotations([two])
    with pytest.raises(ValueError, match="list of tasks"):
        read_annotations(b'{"data": {}}')
