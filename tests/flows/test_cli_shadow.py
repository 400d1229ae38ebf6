"""``vehicles shadow`` on a real Redis stream (a throwaway key prefix) and a real SQLite label
store: the table, ``--json`` as the report itself, and a report, not a traceback, when Redis or
the pairs are missing. It reads no registry, so the versions here need not exist."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rich.console import Console
from typer.testing import CliRunner

import cli.shadow
from cli.main import app
from feedback.items import PredictionInfo
from feedback.shadow import PAIR_FIELD, Pair, Side, shadow_key, shadow_report
from feedback.store import LabelStore

pytestmark = pytest.mark.flows

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.shadow, "console", Console(width=400, force_terminal=False, no_color=True))


@pytest.fixture
def stream(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Redis, str]]:
    redis = Redis.from_url(redis_url)
    prefix = f"test-cli-shadow-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    try:
        yield redis, shadow_key(prefix)
    finally:
        redis.delete(shadow_key(prefix))
        redis.close()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabelStore]:
    url = f"sqlite:///{tmp_path}/review/labels.db"
    monkeypatch.setenv("LABELS_DATABASE_URL", url)
    labels = LabelStore(url)
    yield labels
    labels.close()


def mirrored(redis: Redis, key: str, store: LabelStore) -> tuple[list[Pair], dict[str, dict[str, str]]]:
    """120 pairs of v1 and v2: the challenger alone right on 14 labelled ones, the champion alone on
    1, both on 45; 60 unlabelled, 10 of which disagree."""
    pairs, labels = [], {}
    for i in range(120):
        truth, wrong = ("car", "van") if i % 2 else ("bus", "car")
        mine, theirs = (wrong, truth) if i < 14 else (truth, wrong) if i == 14 or 60 <= i < 70 else (truth, truth)
        pair = Pair(
            f"r{i}",
            time.time(),
            "west",
            Side("1", 9.0 + i % 3, {"vehicle_type": (mine, 0.6), "color": ("blue", 0.8)}),
            Side("2", 0.3, {"vehicle_type": (theirs, 0.7), "color": ("blue", 0.9)}),
        )
        redis.xadd(key, {PAIR_FIELD: pair.to_json()})
        if i < 60:
            labels[pair.item_id] = {"vehicle_type": truth}
            info = PredictionInfo(pair.at, "west", "acme", "vehicle-classifier", "1", {"vehicle_type": mine})
            store.add_label(pair.item_id, labels[pair.item_id], "feedback", client="acme", prediction=info)
        pairs.append(pair)
    return pairs, labels


def test_json_is_the_report_of_the_streams_pairs_and_their_labels(stream: tuple[Redis, str], store: LabelStore) -> None:
    pairs, labels = mirrored(*stream, store)

    result = runner.invoke(app, ["shadow", "--json"])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads(json.dumps(shadow_report(pairs, labels)))
    agree = sum(p.champion.answers["vehicle_type"][0] == p.challenger.answers["vehicle_type"][0] for p in pairs)
    assert (printed["pairs"], printed["labelled"]) == (120, 60)
    assert printed["agreement"] == {"vehicle_type": agree / 120, "color": 1.0}
    assert printed["recommendation"]["action"] == "promote"


def test_the_table_shows_agreement_accuracy_and_the_recommendation(
    stream: tuple[Redis, str], store: LabelStore
) -> None:
    mirrored(*stream, store)

    result = runner.invoke(app, ["shadow"])

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Challenger v2 against champion v1: 120 pairs, 60 labelled" in out
    assert f"{95 / 120:.3f}" in out and f"{59 / 60:.3f}" in out  # agreement; the challenger's accuracy
    assert "vehicle_type: champion car, challenger van x" in out
    assert "Recommendation: promote: challenger more accurate on vehicle_type" in out


def test_missing_redis_or_pairs_is_a_report_that_says_so(
    stream: tuple[Redis, str], store: LabelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = runner.invoke(app, ["shadow"])
    assert empty.exit_code == 0, empty.output
    assert "No shadow pairs: no mirrored pairs yet" in empty.stdout

    monkeypatch.delenv("REDIS_URL")
    unset = runner.invoke(app, ["shadow", "--json"])
    assert unset.exit_code == 0, unset.output
    report = json.loads(unset.stdout)
    assert report["pairs"] == 0 and report["recommendation"]["action"] == "not enough evidence"
    assert "REDIS_URL is not set" in report["recommendation"]["reason"]

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1: refused at once
    down = runner.invoke(app, ["shadow"])
    assert down.exit_code == 0, down.output
    assert "cannot read the stream" in down.stdout


def test_the_newest_pairs_are_read_across_pages_up_to_the_limit(
    stream: tuple[Redis, str], store: LabelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis, key = stream
    answers = {"vehicle_type": ("car", 0.9)}
    with redis.pipeline(transaction=False) as pipe:
        for i in range(2500):
            pair = Pair(f"p{i}", float(i), "west", Side("1", 5.0, answers), Side("2", 0.2, answers))
            pipe.xadd(key, {PAIR_FIELD: pair.to_json()})
        pipe.execute()
    monkeypatch.setenv("MONITOR_MAX_RECORDS", "2200")

    result = runner.invoke(app, ["shadow", "--json"])

    report = json.loads(result.stdout)
    assert report["pairs"] == 2200 and (report["first_at"], report["last_at"]) == (300.0, 2499.0)
