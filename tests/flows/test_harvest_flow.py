"""The ``harvest-labels`` flow on the Prefect harness: reviewed labels in a real SQLite label store,
their images in a real image folder, added to a real training data root through ingest's checks;
each label once, a refused batch marks nothing, and expired images go first."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from flow_support import latest_artifact
from rich.console import Console
from typer.testing import CliRunner

import cli.labels
from cli.main import app
from feedback.images import ImageStore
from feedback.items import KeptItem
from feedback.store import LabelStore
from flows.harvest import harvest_labels
from tasks.data.dataset import load_dataset
from tasks.data.ingest import BatchRejected, add_batch, check_batch
from tasks.data.validation import ValidationConfig
from tasks.registry.promotion_steps import report_skip_task
from tasks.registry.retrain import SkippedRun

pytestmark = pytest.mark.flows

DAY = 86_400.0


@pytest.fixture
def loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LabelStore, ImageStore]]:
    """The label store and image folder serving would write, as the flow's settings name them."""
    url, images = f"sqlite:///{tmp_path}/review/labels.db", str(tmp_path / "review" / "images")
    monkeypatch.setenv("LABELS_DATABASE_URL", url)
    monkeypatch.setenv("REVIEW_IMAGES_URL", images)
    monkeypatch.delenv("PIPELINE_TRAINING_DATA", raising=False)
    store = LabelStore(url)
    yield store, ImageStore(images)
    store.close()


@pytest.fixture
def root(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A training data root holding the tiny set's first 56 images as one batch."""
    first = tmp_path / "first"
    first.mkdir()
    frame = pd.read_csv(tiny_dataset / "labels.csv").iloc[:56]
    frame.assign(image=[str(tiny_dataset / p) for p in frame["image"]]).to_csv(first / "labels.csv", index=False)
    root = tmp_path / "root"
    add_batch(check_batch(first, root, ValidationConfig()), root, "0001-first")
    return root


def review(
    store: LabelStore, images: ImageStore, row: pd.Series, item_id: str, region: str, vehicle_type: str, **kwargs
) -> None:
    """``row``'s image kept by serving (the model answering ``car``/``red``), then corrected by a reviewer."""
    frame = pd.read_csv(row["manifest"])
    classes = {a: sorted(frame[a].unique()) for a in ("vehicle_type", "color")}
    prediction = {
        a: {"label": answer, "probabilities": {c: (0.6 if c == answer else 0.4 / (len(names) - 1)) for c in names}}
        for (a, names), answer in zip(classes.items(), ("car", "red"), strict=True)
    }
    item = KeptItem.from_prediction(
        item_id,
        prediction,
        time=kwargs.get("time", time.time()),
        region=region,
        client="acme",
        model="vehicle-classifier",
        version="1",
        reasons=("uncertain",),
        image_sha=images.put(Path(row["path"]).read_bytes()),
    )
    store.add_item(item)
    assert store.review(item_id, "correct", {"vehicle_type": vehicle_type, "color": row["color"]}) == "created"


def rows_of(tiny_dataset: Path, start: int, stop: int) -> list[pd.Series]:
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    return [
        pd.Series({**r, "path": str(tiny_dataset / r["image"]), "manifest": str(tiny_dataset / "labels.csv")})
        for r in frame.iloc[start:stop].to_dict("records")
    ]


def test_reviewed_labels_go_in_once_and_expired_images_go_first(loop, root: Path, tiny_dataset: Path) -> None:
    store, images = loop
    new = rows_of(tiny_dataset, 56, 84)
    for i, row in enumerate(new):
        review(store, images, row, f"req-{i}", "night" if i < 20 else "day", row["vehicle_type"])
    [old] = rows_of(tiny_dataset, 0, 1)
    review(store, images, old, "req-old", "night", old["vehicle_type"], time=time.time() - 40 * DAY)
    old_sha = store.item("req-old").image_sha

    harvest = harvest_labels(str(root))

    assert harvest.regions == {"night": 20, "day": 8} and harvest.images == 28
    assert harvest.expired_images == 1 and not images.exists(old_sha) and store.item("req-old") is None
    assert (root / harvest.batch).is_dir() and harvest.batch.endswith("-reviewed-labels")
    snapshot = load_dataset(root).frame
    assert len(snapshot) == 84
    added = pd.read_csv(root / harvest.batch / "labels.csv")
    assert sorted(added["vehicle_type"]) == sorted(r["vehicle_type"] for r in new), "the reviewers' labels"
    assert store.harvestable() == []
    assert {store.label(f"req-{i}").harvested_batch for i in range(28)} == {harvest.batch}
    report = latest_artifact("harvest")
    assert f"# Harvested 28 labels (28 images) as `{harvest.batch}`" in report
    assert "| night | 20 |\n| day | 8 |" in report

    again = harvest_labels(str(root))

    assert again.batch is None and again.note == "none waiting"
    assert sorted(p.name for p in root.iterdir()) == sorted(["0001-first", harvest.batch]), "each label once"


def test_a_refused_batch_adds_and_marks_nothing(loop, root: Path, tiny_dataset: Path) -> None:
    store, images = loop
    for i, row in enumerate(rows_of(tiny_dataset, 56, 60)):
        review(store, images, row, f"req-{i}", "night", row["vehicle_type"])
    [known] = rows_of(tiny_dataset, 0, 1)  # already in the root: a person now says it is something else
    other = "bus" if known["vehicle_type"] != "bus" else "van"
    review(store, images, known, "req-conflict", "night", other)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))

    state = harvest_labels(str(root), return_state=True)

    assert state.is_failed() and "1 problems in the harvested labels" in state.message
    with pytest.raises(BatchRejected) as refused:
        state.result()
    [problem] = refused.value.problems.to_dict("records")
    assert problem["check"] == "same_content_same_labels" and problem["image"].startswith("items req-conflict (image")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert len(store.harvestable()) == 5 and store.label("req-0").harvested_batch is None
    assert "items req-conflict" in latest_artifact("harvest")


def test_fewer_labels_than_asked_for_wait(loop, tmp_path: Path, tiny_dataset: Path) -> None:
    store, images = loop
    [row] = rows_of(tiny_dataset, 56, 57)
    review(store, images, row, "req-0", "night", row["vehicle_type"])

    harvest = harvest_labels(str(tmp_path / "root"), min_labels=5)

    assert harvest.batch is None and harvest.note == "1 reviewed labels are waiting; a batch needs 5"
    assert not (tmp_path / "root").exists() and len(store.harvestable()) == 1


def test_the_cli_harvests_and_reports_a_refusal_without_a_traceback(
    loop, root: Path, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.labels, "console", Console(width=400, force_terminal=False, no_color=True))
    store, images = loop
    runner = CliRunner()
    [known] = rows_of(tiny_dataset, 0, 1)
    review(store, images, known, "req-conflict", "night", "bus" if known["vehicle_type"] != "bus" else "van")
    no_root = runner.invoke(app, ["labels", "harvest"])
    assert no_root.exit_code == 1 and "no training data root" in no_root.output, "synthetic is not a root"

    refused = runner.invoke(app, ["labels", "harvest", "--into", str(root)])

    assert refused.exit_code == 1 and "Harvest refused" in refused.output
    assert "items req-conflict" in refused.output and "Traceback" not in refused.output
    store.review("req-conflict", "reject")
    for i, row in enumerate(rows_of(tiny_dataset, 56, 62)):
        review(store, images, row, f"req-{i}", "day", row["vehicle_type"])
    monkeypatch.setenv("PIPELINE_TRAINING_DATA", str(root))

    done = runner.invoke(app, ["labels", "harvest"])

    assert done.exit_code == 0, done.output
    assert "Harvested 6 labels (6 images) as" in done.output and f"into {root}: day 6" in done.output


def test_a_skipped_retrain_says_how_many_images_wait_for_review_and_where(loop, tiny_dataset: Path) -> None:
    store, images = loop
    for i, row in enumerate(rows_of(tiny_dataset, 0, 3)):
        review(store, images, row, f"req-{i}", "night", row["vehicle_type"])
    prediction = {"vehicle_type": {"label": "bus", "probabilities": {"bus": 0.5, "van": 0.5}}}
    for i in range(37):
        sha = images.put(f"night-{i}".encode())
        item = KeptItem.from_prediction(
            f"q-{i}",
            prediction,
            time=time.time(),
            region="night",
            client="acme",
            model="m",
            version="1",
            reasons=("drifted",),
            image_sha=sha,
        )
        store.add_item(item)
    skip = SkippedRun("1", "champion", "1", "/data/root", "abcdef0123456789", "84")

    reported = report_skip_task(skip, "drift", ["night"], store.url)

    assert reported.waiting == {"night": 37} and reported.harvestable == {"night": 3}
    text = latest_artifact("training-skipped")
    assert (
        "- drift was seen but there is nothing new to learn from; 37 images from night are waiting for review "
        "at /label (or `vehicles labels export`)"
    ) in text
    assert "- 3 reviewed labels from night can be added now: `vehicles labels harvest`" in text
