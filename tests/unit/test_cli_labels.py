"""``vehicles labels`` on a real SQLite label store and image folder: status, the Label Studio
round trip (an export answered by hand as Label Studio would), refusals, and expiry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli.labels
from cli.main import app
from feedback.accuracy import BASIS
from feedback.images import ImageStore
from feedback.items import KeptItem
from feedback.store import LabelStore

pytestmark = pytest.mark.unit

runner = CliRunner()
CLASSES = {"vehicle_type": ["bus", "car", "van"], "color": ["red", "blue"]}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.labels, "console", Console(width=400, force_terminal=False, no_color=True))


@pytest.fixture
def urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    database, images = f"sqlite:///{tmp_path}/review/labels.db", str(tmp_path / "review" / "images")
    monkeypatch.setenv("LABELS_DATABASE_URL", database)
    monkeypatch.setenv("REVIEW_IMAGES_URL", images)
    return database, images


@pytest.fixture
def store(urls: tuple[str, str]) -> Iterator[LabelStore]:
    labels = LabelStore(urls[0])
    yield labels
    labels.close()


def keep(store: LabelStore, images: ImageStore, item_id: str, region: str, answer: str, **kwargs) -> KeptItem:
    """A kept item answering ``answer``/red, with an image of its own."""
    probabilities = {c: (0.8 if c == answer else 0.1) for c in CLASSES["vehicle_type"]}
    prediction = {
        "vehicle_type": {"label": answer, "probabilities": probabilities},
        "color": {"label": "red", "probabilities": {"red": 0.9, "blue": 0.1}},
    }
    fields = {"time": time.time(), "reasons": ("uncertain",)} | kwargs
    item = KeptItem.from_prediction(
        item_id,
        prediction,
        region=region,
        client="acme",
        model="vehicle-classifier",
        version="3",
        image_sha=images.put(item_id.encode()),
        **fields,
    )
    store.add_item(item)
    return item


def annotated(task: dict, number: int, **labels: str) -> dict:
    """``task`` as Label Studio exports it once a person answered ``labels``."""
    result = [
        {"from_name": a, "to_name": "image", "type": "choices", "value": {"choices": [label]}}
        for a, label in labels.items()
    ]
    stamp = f"2025-01-01T00:00:{number:02d}Z"
    annotation = {"id": number, "result": result, "was_cancelled": False, "created_at": stamp, "updated_at": stamp}
    return {**task, "id": number, "annotations": [annotation]}


def test_without_a_store_status_says_so_and_creates_nothing(urls: tuple[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["labels", "status"])

    assert result.exit_code == 0, result.output
    assert "No labels yet: no label store at" in result.output
    as_json = runner.invoke(app, ["labels", "status", "--json"])
    assert json.loads(as_json.stdout) == {"database": urls[0], "regions": {}, "online_accuracy": [], "basis": BASIS}
    assert not (tmp_path / "review").exists()
    assert runner.invoke(app, ["labels", "export"]).exit_code == 1


def test_export_then_import_a_label_studio_export(store: LabelStore, urls: tuple[str, str], tmp_path: Path) -> None:
    images = ImageStore(urls[1])
    keep(store, images, "req-1", "night", "bus")
    keep(store, images, "req-2:0", "night", "car")
    keep(store, images, "req-3", "day", "van")
    out = tmp_path / "tasks.json"

    exported = runner.invoke(
        app, ["labels", "export", "--format", "label-studio", "--out", str(out), "--region", "night"]
    )

    assert exported.exit_code == 0, exported.output
    assert f"Exported 2 tasks to {out}" in exported.output
    tasks = {task["data"]["item_id"]: task for task in json.loads(out.read_text())}
    assert set(tasks) == {"req-1", "req-2:0"}
    assert tasks["req-2:0"]["data"]["image"] == "http://127.0.0.1:8000/api/labels/req-2%3A0/image"
    assert tasks["req-1"]["predictions"][0]["result"][0]["value"] == {"choices": ["bus"]}
    config = out.with_suffix(".xml").read_text()
    assert '<Choices name="vehicle_type" toName="image"' in config and '<Choice value="van"/>' in config
    answered = [
        annotated(tasks["req-1"], 1, vehicle_type="van"),  # corrected: the colour stays the model's
        annotated(tasks["req-2:0"], 2, vehicle_type="car", color="blue"),
        annotated({"data": {"item_id": "expired-1", "image": "x"}}, 3, vehicle_type="bus"),
        annotated({"data": {"item_id": "req-3", "image": "x"}}, 4, vehicle_type="tractor"),
    ]
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(answered))

    imported = runner.invoke(app, ["labels", "import", str(export_file)])

    assert imported.exit_code == 1, "some answers were refused"
    assert "Imported from" in imported.output and "2 created; 2 refused" in imported.output
    assert "expired-1" in imported.output and "unknown or expired item" in imported.output
    assert "'tractor' is not a class of this model" in imported.output
    assert "Traceback" not in imported.output
    assert store.label("req-1").labels == {"vehicle_type": "van", "color": "red"}
    assert (store.label("req-2:0").source, store.label("req-2:0").labelled_by) == ("review", "label-studio")
    assert store.label("req-3") is None

    again = runner.invoke(app, ["labels", "import", str(export_file), "--json"])
    assert json.loads(again.stdout)["outcomes"] == {"unchanged": 2}

    export_file.write_text(json.dumps([annotated(tasks["req-1"], 5, vehicle_type="bus")]))
    conflict = runner.invoke(app, ["labels", "import", str(export_file)])
    assert conflict.exit_code == 1 and "--replace to replace them" in conflict.output
    replaced = runner.invoke(app, ["labels", "import", str(export_file), "--replace"])
    assert replaced.exit_code == 0 and "1 replaced; 0 refused" in replaced.output
    assert store.label("req-1").labels["vehicle_type"] == "bus"


def test_an_unreadable_export_is_an_error_not_a_traceback(store: LabelStore, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"data": {"image": "x"}, "annotations": []}]')

    result = runner.invoke(app, ["labels", "import", str(bad)])

    assert result.exit_code == 1
    assert "has no data.item_id" in result.output and "Traceback" not in result.output


def test_status_counts_per_region_and_scores_the_unbiased_labels(store: LabelStore, urls: tuple[str, str]) -> None:
    images = ImageStore(urls[1])
    for i in range(4):
        keep(store, images, f"u{i}", "night", "bus", reasons=("uniform",))
    keep(store, images, "t1", "night", "bus")
    keep(store, images, "t2", "day", "bus")
    store.review("u0", "confirm")
    store.review("u1", "correct", {"vehicle_type": "car"})
    store.review("t1", "correct", {"vehicle_type": "car"})  # targeted: trains, but is not scored
    store.review("u2", "reject")

    result = runner.invoke(app, ["labels", "status", "--json"])

    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["regions"]["night"] == {
        "kept": 5,
        "queued": 1,
        "rejected": 1,
        "labelled": 3,
        "harvested": 0,
        "harvestable": 3,
    }
    assert status["regions"]["day"]["queued"] == 1
    scored = {(e["region"], e["attribute"]): e for e in status["online_accuracy"]}
    assert set(scored) == {("night", "vehicle_type"), ("night", "color")}, "reviews label every attribute"
    night = scored["night", "vehicle_type"]
    assert (night["region"], night["attribute"], night["labelled"], night["accuracy"]) == (
        "night",
        "vehicle_type",
        2,
        0.5,
    )
    assert night["excluded"] == 1 and status["basis"] == BASIS
    table = runner.invoke(app, ["labels", "status"])
    assert "Online accuracy" in table.output and "0.500" in table.output and "0.095 to 0.905" in table.output


def test_expire_deletes_what_is_past_the_window(store: LabelStore, urls: tuple[str, str]) -> None:
    images = ImageStore(urls[1])
    old = keep(store, images, "old", "night", "bus", time=time.time() - 40 * 86_400)
    young = keep(store, images, "young", "night", "bus")

    result = runner.invoke(app, ["labels", "expire", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images_deleted"] == 1 and json.loads(result.stdout)["days"] == 30
    assert store.item("old") is None and not images.exists(old.image_sha)
    assert store.item("young") is not None and images.exists(young.image_sha)
    shorter = runner.invoke(app, ["labels", "expire", "--days", "0"])
    assert shorter.exit_code == 0 and "1 images" in shorter.output and store.item("young") is None
