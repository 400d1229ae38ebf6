"""``LabelStore`` on a SQLite file and on the real PostgreSQL: items, labels, the review queue,
harvest, expiry, and two processes writing the same items and labels at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from feedback.items import KeptItem, PredictionInfo
from feedback.store import LabelStore

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The PostgreSQL the stack tests use (trust auth); each test gets a schema of its own, dropped after.
POSTGRES = os.environ.get("LABELS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PROBABILITIES = {
    "bus": {"bus": 0.8, "car": 0.15, "van": 0.05},
    "car": {"car": 0.55, "bus": 0.4, "van": 0.05},
    "van": {"van": 0.35, "car": 0.33, "bus": 0.32},
}


def kept(item_id: str, *, label: str = "bus", region: str = "north", time: float = 1000.0, **kwargs) -> KeptItem:
    """A kept item whose answer is ``label`` (margin 0.65 for bus, 0.15 for car, 0.02 for van)."""
    prediction = {"vehicle_type": {"label": label, "probabilities": PROBABILITIES[label]}}
    fields = {"client": "acme", "model": "vehicle-classifier", "version": "3", "reasons": ("uncertain",)}
    fields |= {"image_sha": f"{sum(map(ord, item_id)):064x}"} | kwargs
    return KeptItem.from_prediction(item_id, prediction, time=time, region=region, **fields)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/review/labels.db"
        return
    schema = f"feedback_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[LabelStore]:
    labels = LabelStore(database_url)
    yield labels
    labels.close()


def test_an_item_is_stored_once_and_read_back_whole(store: LabelStore) -> None:
    item = kept("r1", label="car", reasons=("uniform", "uncertain"))

    assert store.add_item(item) is True
    assert store.add_item(item) is False

    back = store.item("r1")
    assert back is not None and KeptItem(**{f: getattr(back, f) for f in KeptItem.__dataclass_fields__}) == item
    assert back.uniform and not back.skipped
    assert store.item("nope") is None
    assert store.kept_count() == 1


def test_a_label_is_created_then_unchanged_then_a_conflict_unless_replaced(store: LabelStore) -> None:
    store.add_item(kept("r1", label="car", reasons=("uniform",)))

    assert store.add_label("r1", {"vehicle_type": "bus"}, "feedback", client="acme") == "created"
    assert store.add_label("r1", {"vehicle_type": "bus"}, "feedback", client="acme") == "unchanged"
    assert store.add_label("r1", {"vehicle_type": "van"}, "feedback", client="acme") == "conflict"
    assert store.label("r1").labels == {"vehicle_type": "bus"}
    assert store.add_label("r1", {"vehicle_type": "van"}, "feedback", client="acme", replace=True) == "replaced"

    row = store.label("r1")
    assert row.labels == {"vehicle_type": "van"} and row.predicted == {"vehicle_type": "car"}
    assert (row.region, row.client, row.model, row.version) == ("north", "acme", "vehicle-classifier", "3")
    assert row.kept and row.uniform and row.source == "feedback" and row.predicted_at == 1000.0


def test_a_prediction_whose_image_was_not_kept_is_labelled_from_what_serving_remembers(store: LabelStore) -> None:
    info = PredictionInfo(900.0, "south", "acme", "vehicle-classifier", "3", {"vehicle_type": "car"}, uniform=True)

    with pytest.raises(KeyError):
        store.add_label("r9", {"vehicle_type": "bus"}, "feedback", client="acme")
    assert store.add_label("r9", {"vehicle_type": "bus"}, "feedback", client="acme", prediction=info) == "created"

    (row,) = store.labelled_rows()
    assert (row.item_id, row.region, row.predicted, row.kept, row.uniform) == (
        "r9",
        "south",
        {"vehicle_type": "car"},
        False,
        True,
    )
    assert store.harvestable() == [] and store.queue() == []


def test_feedback_that_overtakes_its_item_still_trains_once_the_item_arrives(store: LabelStore) -> None:
    """Serving stores kept items on a background thread, so feedback can come first."""
    info = PredictionInfo(1000.0, "north", "acme", "vehicle-classifier", "3", {"vehicle_type": "car"}, kept=True)
    store.add_label("r1", {"vehicle_type": "van"}, "feedback", client="acme", prediction=info)
    assert store.harvestable() == []

    store.add_item(kept("r1", label="car"))

    assert store.queue() == []
    assert [(h.item_id, h.labels) for h in store.harvestable()] == [("r1", {"vehicle_type": "van"})]


def test_the_queue_puts_drifted_regions_first_then_the_lowest_margin_then_the_oldest(store: LabelStore) -> None:
    store.add_item(kept("north-sure", label="bus", time=1))
    store.add_item(kept("north-unsure-new", label="van", time=5))
    store.add_item(kept("north-unsure-old", label="van", time=2))
    store.add_item(kept("night-sure", label="bus", region="night", time=9))
    store.add_item(kept("labelled", label="van", time=0))
    store.add_label("labelled", {"vehicle_type": "van"}, "feedback", client="acme")

    assert [q.item_id for q in store.queue()] == ["north-unsure-old", "north-unsure-new", "north-sure", "night-sure"]
    queue = store.queue(drifted_regions={"night"})
    assert [q.item_id for q in queue] == ["night-sure", "north-unsure-old", "north-unsure-new", "north-sure"]
    assert [q.drifted for q in queue] == [True, False, False, False]
    assert [q.item_id for q in store.queue(region="north", limit=2)] == ["north-unsure-old", "north-unsure-new"]


def test_a_skipped_item_stays_queued_after_all_others_and_a_rejected_one_leaves(store: LabelStore) -> None:
    for name, label in (("a", "van"), ("b", "car"), ("c", "bus")):
        store.add_item(kept(name, label=label))

    assert store.review("a", "skip", reviewer="ann") == "skipped"
    assert store.review("b", "skip", reviewer="ann") == "skipped"
    assert store.review("c", "reject", reviewer="ann") == "rejected"

    queue = store.queue()
    assert [q.item_id for q in queue] == ["a", "b"] and all(q.skipped for q in queue)
    assert store.review("a", "skip") == "skipped"
    assert [q.item_id for q in store.queue()] == ["b", "a"]
    assert store.counts()["north"] == {"kept": 3, "queued": 2, "rejected": 1, "labelled": 0, "harvested": 0}


def test_confirm_takes_the_models_answer_and_correct_takes_the_given_labels(store: LabelStore) -> None:
    store.add_item(kept("a", label="car"))
    store.add_item(kept("b", label="car"))

    assert store.review("a", "confirm", reviewer="ann") == "created"
    assert store.review("b", "correct", {"vehicle_type": "van"}, reviewer="ann") == "created"

    assert store.label("a").labels == {"vehicle_type": "car"} and store.label("a").labelled_by == "ann"
    assert store.label("b").labels == {"vehicle_type": "van"} and store.label("b").source == "review"
    assert store.queue() == []
    # A second reviewer who disagrees is told, not obeyed, unless asked to replace.
    assert store.review("b", "confirm", reviewer="bob") == "conflict"
    assert store.review("b", "correct", {"vehicle_type": "van"}, reviewer="bob") == "unchanged"
    assert store.review("b", "confirm", reviewer="bob", replace=True) == "replaced"


def test_a_review_names_what_it_accepts_when_given_something_else(store: LabelStore) -> None:
    store.add_item(kept("a", label="car"))

    with pytest.raises(ValueError, match=r"allowed: \['car', 'bus', 'van'\]"):
        store.review("a", "correct", {"vehicle_type": "tram"})
    with pytest.raises(ValueError, match=r"predicts \['vehicle_type'\]"):
        store.review("a", "correct", {"colour": "red"})
    with pytest.raises(ValueError, match="confirm"):
        store.review("a", "approve")
    with pytest.raises(KeyError):
        store.review("missing", "confirm")
    assert store.label("a") is None


def test_a_rejected_item_is_neither_harvested_nor_scored_until_a_reviewer_labels_it(store: LabelStore) -> None:
    store.add_item(kept("a", label="car"))
    store.add_label("a", {"vehicle_type": "car"}, "feedback", client="acme")

    store.review("a", "reject")
    assert store.harvestable() == [] and store.labelled_rows() == []

    store.review("a", "confirm")
    assert [h.item_id for h in store.harvestable()] == ["a"] and len(store.labelled_rows()) == 1


def test_each_complete_label_is_harvested_once(store: LabelStore) -> None:
    two = {"vehicle_type": {"label": "car", "probabilities": PROBABILITIES["car"]}}
    two["color"] = {"label": "red", "probabilities": {"red": 0.6, "blue": 0.4}}
    partial = KeptItem.from_prediction(
        "partial", two, time=1, region="north", client="acme", model="m", version="3", reasons=(), image_sha="ab" * 32
    )
    store.add_item(partial)
    store.add_label("partial", {"vehicle_type": "car"}, "feedback", client="acme")  # colour not given
    for name in ("a", "b"):
        store.add_item(kept(name))
        store.review(name, "confirm")

    rows = store.harvestable()
    assert [(r.item_id, r.labels, r.source, r.image_sha) for r in rows] == [
        ("a", {"vehicle_type": "bus"}, "review", kept("a").image_sha),
        ("b", {"vehicle_type": "bus"}, "review", kept("b").image_sha),
    ]
    assert [r.item_id for r in store.harvestable(limit=1)] == ["a"]

    assert store.mark_harvested(["a", "unknown"], "batch-1") == ["a"]
    assert store.mark_harvested(["a", "b"], "batch-2") == ["b"]
    assert store.harvestable() == []
    assert store.label("a").harvested_batch == "batch-1" and store.label("b").harvested_batch == "batch-2"
    assert store.counts()["north"]["harvested"] == 2


def test_expiry_deletes_old_items_and_labels_and_returns_only_images_nothing_else_uses(store: LabelStore) -> None:
    shared = "cd" * 32
    store.add_item(kept("old", time=100, image_sha=shared))
    store.add_item(kept("old-alone", time=100))
    store.add_item(kept("new", time=300, image_sha=shared))
    store.review("old", "confirm")
    info = PredictionInfo(100, "south", "acme", "m", "3", {"vehicle_type": "bus"})
    store.add_label("old-unkept", {"vehicle_type": "bus"}, "feedback", client="acme", prediction=info)
    store.add_label("new", {"vehicle_type": "bus"}, "feedback", client="acme")

    assert store.expiring(older_than=200) == [kept("old-alone").image_sha]
    assert store.item("old") is not None  # expiring only tells

    gone = store.expire(older_than=200)

    assert gone == [kept("old-alone").image_sha]
    assert store.item("old") is None and store.label("old") is None and store.label("old-unkept") is None
    assert store.item("new") is not None and [r.item_id for r in store.labelled_rows()] == ["new"]
    assert store.kept_count() == 1 and store.expire(older_than=200) == []


def test_the_counts_and_the_hourly_count_follow_the_items(store: LabelStore) -> None:
    store.add_item(kept("a", time=10))
    store.add_item(kept("b", time=20, region="night"))
    store.add_item(kept("c", time=30, region="night"))
    store.review("b", "confirm")

    assert store.kept_count(since=20) == 2
    assert store.counts() == {
        "night": {"kept": 2, "queued": 1, "rejected": 0, "labelled": 1, "harvested": 0},
        "north": {"kept": 1, "queued": 1, "rejected": 0, "labelled": 0, "harvested": 0},
    }


def test_the_tables_survive_a_new_store_on_the_same_database(database_url: str) -> None:
    first = LabelStore(database_url)
    first.add_item(kept("a"))
    first.close()

    again = LabelStore(database_url)
    assert again.item("a") is not None
    again.close()


WRITER = """
import json, sys
sys.path.insert(0, sys.argv[3])
from test_feedback_store import kept
from feedback.store import LabelStore

store = LabelStore(sys.argv[1])
me = int(sys.argv[2])
items, labels = [], []
for i in range(60):
    items.append(store.add_item(kept(f"r{i}", label="car")))
    # Even items: both processes give the same label; odd ones: each its own.
    label = "bus" if i % 2 == 0 or me == 0 else "van"
    labels.append(store.add_label(f"r{i}", {"vehicle_type": label}, "feedback", client="acme"))
store.close()
print(json.dumps({"items": items, "labels": labels}))
"""


def test_two_processes_writing_the_same_items_and_labels_store_each_once(database_url: str) -> None:
    """Like two serving replicas and the worker: every insert is idempotent, a race included;
    the tables are created by whichever process starts first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, database_url, str(me), str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for me in (0, 1)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))

    for i in range(60):
        assert sorted(r["items"][i] for r in results) == [False, True]
        outcomes = sorted(r["labels"][i] for r in results)
        assert outcomes == (["created", "unchanged"] if i % 2 == 0 else ["conflict", "created"])
    store = LabelStore(database_url)
    assert store.kept_count() == 60 and len(store.labelled_rows()) == 60
    for i in range(1, 60, 2):
        winner = 0 if results[0]["labels"][i] == "created" else 1
        assert store.label(f"r{i}").labels == {"vehicle_type": "bus" if winner == 0 else "van"}
    store.close()
