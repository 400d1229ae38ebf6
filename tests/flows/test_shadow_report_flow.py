"""The shadow-report flow on the Prefect harness: pairs of the trained v1 (champion) and a second
registered version (challenger) in a real Redis stream under a throwaway prefix, labels for part of
them in a real SQLite label store; the MLflow run, the Prefect artifact, and promotion by evidence
through the flow (``SHADOW_AUTO_PROMOTE``) and through ``vehicles promote --from-shadow``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pytest
from flow_support import MODEL, events, latest_artifact
from mlflow import MlflowClient
from redis import Redis
from rich.console import Console
from scipy.stats import binomtest
from typer.testing import CliRunner

import cli.main
from cli.main import app
from feedback.items import PredictionInfo
from feedback.shadow import KEEP, PAIR_FIELD, PROMOTE, UNDECIDED, Pair, Side, shadow_key
from feedback.store import LabelStore
from flows.shadow import report_shadow
from tasks.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS
from tasks.registry.versions import version_contract, version_for_alias

pytestmark = pytest.mark.flows

PROMOTED = "vehicle.model.promoted"


@dataclass(frozen=True)
class Registry:
    """v1 (the trained champion) and v2 (the challenger serving mirrors traffic to)."""

    champion: str
    challenger: str
    classes: list[str]  # vehicle_type's labels, from the versions' contract


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.main, "console", Console(width=400, force_terminal=False, no_color=True))


@pytest.fixture
def redis_prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Redis, str]]:
    redis = Redis.from_url(redis_url)
    prefix = f"test-shadow-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    monkeypatch.delenv("SHADOW_AUTO_PROMOTE", raising=False)
    monkeypatch.delenv("SHADOW_ALIAS", raising=False)
    try:
        yield redis, prefix
    finally:
        keys = list(redis.scan_iter(f"{prefix}:*"))
        if keys:
            redis.delete(*keys)
        redis.close()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabelStore]:
    url = f"sqlite:///{tmp_path}/shadow-review/labels.db"
    monkeypatch.setenv("LABELS_DATABASE_URL", url)
    labels = LabelStore(url)
    yield labels
    labels.close()


@pytest.fixture
def registry(trained_v1_copy) -> Registry:
    """The trained v1 as champion and the same model registered again as v2, the challenger: the
    registry holds two real versions with one contract, and the pairs decide which answers better."""
    client = MlflowClient()
    v1 = trained_v1_copy.summary.version
    registered = client.get_model_version(MODEL, v1)
    v2 = str(client.create_model_version(MODEL, registered.source, registered.run_id).version)
    client.set_registered_model_alias(MODEL, CHALLENGER, v2)
    return Registry(v1, v2, version_contract(MODEL, v1)["vehicle_type"])


def mirror(
    redis: Redis,
    prefix: str,
    store: LabelStore,
    registry: Registry,
    *,
    challenger_only: int,
    champion_only: int,
    both_right: int = 60,
    unlabelled: int = 40,
) -> list[Pair]:
    """Pairs as serving appends them, and labels for the first ones as clients give them.

    Labelled pairs: ``challenger_only`` where only the challenger is right, ``champion_only`` where
    only the champion is, ``both_right`` where both are. Then ``unlabelled`` pairs, a quarter of
    which disagree. Colour always agrees.
    """
    classes = registry.classes
    pairs = []
    plan = [("challenger", challenger_only), ("champion", champion_only), ("both", both_right), (None, unlabelled)]
    i = 0
    for right, times in plan:
        for _ in range(times):
            truth, wrong = classes[i % len(classes)], classes[(i + 1) % len(classes)]
            disagree = right in ("challenger", "champion") or (right is None and i % 4 == 0)
            mine = wrong if right == "challenger" else truth
            theirs = wrong if right == "champion" or (right is None and disagree) else truth
            pair = Pair(
                f"req-{i}",
                time.time(),
                "north" if i % 2 else "south",
                Side(registry.champion, 12.0, {"vehicle_type": (mine, 0.7), "color": ("red", 0.9)}),
                Side(registry.challenger, 0.4, {"vehicle_type": (theirs, 0.8), "color": ("red", 0.9)}),
            )
            redis.xadd(shadow_key(prefix), {PAIR_FIELD: pair.to_json()})
            if right is not None:
                info = PredictionInfo(
                    pair.at, pair.region, "acme", MODEL, registry.champion, {"vehicle_type": mine, "color": "red"}
                )
                store.add_label(pair.item_id, {"vehicle_type": truth}, "feedback", client="acme", prediction=info)
            pairs.append(pair)
            i += 1
    return pairs


def aliases(*names: str) -> tuple[str | None, ...]:
    found = (version_for_alias(MlflowClient(), MODEL, name) for name in names)
    return tuple(None if v is None else str(v.version) for v in found)


def test_the_report_counts_the_pairs_and_its_recommendation_follows_mcnemar(
    registry: Registry, redis_prefix: tuple[Redis, str], store: LabelStore
) -> None:
    redis, prefix = redis_prefix
    pairs = mirror(redis, prefix, store, registry, challenger_only=15, champion_only=2)
    redis.xadd(shadow_key(prefix), {PAIR_FIELD: "not a pair"})

    run = report_shadow()

    report = run.report
    agree = sum(p.champion.answers["vehicle_type"][0] == p.challenger.answers["vehicle_type"][0] for p in pairs)
    assert (report["champion"], report["challenger"], report["pairs"]) == (registry.champion, registry.challenger, 117)
    assert report["agreement"] == {"vehicle_type": agree / 117, "color": 1.0}
    assert report["labelled"] == 77
    accuracy = report["attributes"]["vehicle_type"]["accuracy"]
    assert (accuracy["challenger_only"], accuracy["champion_only"], accuracy["labelled"]) == (15, 2, 77)
    assert accuracy["p_value"] == pytest.approx(binomtest(15, 17, 0.5).pvalue) and accuracy["p_value"] < 0.05
    assert report["recommendation"]["action"] == PROMOTE
    assert run.notes == (f"1 entries of {shadow_key(prefix)} are not pairs; left out",)
    assert not run.promotion.promoted and "SHADOW_AUTO_PROMOTE is off" in run.promotion.reason
    assert aliases(CHAMPION, CHALLENGER) == (registry.champion, registry.challenger), "the policy is off by default"

    tracked = MlflowClient().get_run(run.mlflow_run_id)
    assert MlflowClient().get_experiment(tracked.info.experiment_id).name == "vehicle-monitoring"
    metrics, tags = tracked.data.metrics, tracked.data.tags
    assert (metrics["shadow.pairs"], metrics["shadow.labelled"]) == (117, 77)
    assert metrics["shadow.vehicle_type.agreement"] == agree / 117
    assert metrics["shadow.vehicle_type.p_value"] == pytest.approx(accuracy["p_value"])
    assert metrics["shadow.vehicle_type.challenger_accuracy"] == pytest.approx(75 / 77)
    assert (tags["champion"], tags["challenger"], tags["recommendation"]) == (
        registry.champion,
        registry.challenger,
        PROMOTE,
    )
    assert mlflow.artifacts.load_dict(f"runs:/{run.mlflow_run_id}/shadow.json") == json.loads(json.dumps(report))
    markdown = latest_artifact("shadow-report", tags["prefect.flow_run_id"])
    assert f"challenger v{registry.challenger} against champion v{registry.champion}" in markdown
    assert "**promote**" in markdown and "Not promoted: SHADOW_AUTO_PROMOTE is off" in markdown


@pytest.mark.parametrize(
    ("challenger_only", "champion_only", "action"),
    [(2, 15, KEEP), (6, 5, UNDECIDED)],
    ids=["worse", "no-difference"],
)
def test_auto_promotion_leaves_the_champion_unless_the_evidence_says_promote(
    registry: Registry,
    redis_prefix: tuple[Redis, str],
    store: LabelStore,
    monkeypatch: pytest.MonkeyPatch,
    challenger_only: int,
    champion_only: int,
    action: str,
) -> None:
    redis, prefix = redis_prefix
    mirror(redis, prefix, store, registry, challenger_only=challenger_only, champion_only=champion_only)
    monkeypatch.setenv("SHADOW_AUTO_PROMOTE", "true")

    run = report_shadow()

    assert run.report["recommendation"]["action"] == action
    assert not run.promotion.promoted and action in run.promotion.reason
    assert aliases(CHAMPION, CHALLENGER) == (registry.champion, registry.challenger)


def test_auto_promotion_moves_the_champion_and_records_the_decision_with_its_evidence(
    registry: Registry, redis_prefix: tuple[Redis, str], store: LabelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis, prefix = redis_prefix
    mirror(redis, prefix, store, registry, challenger_only=15, champion_only=2)
    monkeypatch.setenv("SHADOW_AUTO_PROMOTE", "true")
    started = datetime.now(UTC)

    run = report_shadow()

    assert run.promotion.promoted and run.promotion.previous == registry.champion
    assert aliases(CHAMPION, PREVIOUS, CHALLENGER) == (registry.challenger, registry.champion, None)
    tags = MlflowClient().get_model_version(MODEL, registry.challenger).tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.by"] == "shadow-report flow"
    assert tags["promotion.reason"].startswith(
        f"shadow evidence against v{registry.champion}: challenger more accurate"
    )
    assert tags["shadow.run_id"] == run.mlflow_run_id and tags["shadow.champion_version"] == registry.champion
    assert (tags["shadow.pairs"], tags["shadow.vehicle_type.labelled"]) == ("117", "77")
    assert float(tags["shadow.vehicle_type.p_value"]) == pytest.approx(binomtest(15, 17, 0.5).pvalue, rel=1e-5)
    assert MlflowClient().get_run(run.mlflow_run_id).data.tags["promoted"] == registry.challenger
    [promoted] = events(PROMOTED, since=started)
    assert promoted.payload["by"] == "shadow" and promoted.payload["version"] == registry.challenger
    assert promoted.payload["previous_champion"] == registry.champion
    markdown = latest_artifact(
        "shadow-report", MlflowClient().get_run(run.mlflow_run_id).data.tags["prefect.flow_run_id"]
    )
    assert f"**Promoted v{registry.challenger}**" in markdown

    again = report_shadow()

    assert not again.promotion.promoted and "already the champion" in again.promotion.reason
    assert aliases(CHAMPION, PREVIOUS) == (registry.challenger, registry.champion)


def test_promote_from_shadow_refuses_without_the_evidence_and_yes_overrides_it(
    registry: Registry, redis_prefix: tuple[Redis, str], store: LabelStore
) -> None:
    redis, prefix = redis_prefix
    mirror(redis, prefix, store, registry, challenger_only=2, champion_only=15)

    refused = CliRunner().invoke(app, ["promote", "--from-shadow"])

    assert refused.exit_code == 1, refused.output
    assert "the shadow report says keep champion: challenger less accurate on vehicle_type" in refused.output
    assert f"--yes to promote v{registry.challenger} anyway" in refused.output
    assert aliases(CHAMPION, CHALLENGER) == (registry.champion, registry.challenger)

    forced = CliRunner().invoke(app, ["promote", "--from-shadow", "--yes"])

    assert forced.exit_code == 0, forced.output
    assert f"champion is now v{registry.challenger} (previous: v{registry.champion})" in forced.output
    tags = MlflowClient().get_model_version(MODEL, registry.challenger).tags
    assert tags["promotion.reason"].startswith("promoted by hand against the shadow report's recommendation (keep")
    assert tags["promotion.by"] == "vehicles promote --from-shadow" and tags["shadow.recommendation"] == KEEP


def test_promote_from_shadow_promotes_on_evidence_about_the_shadowed_version_only(
    registry: Registry, redis_prefix: tuple[Redis, str], store: LabelStore
) -> None:
    redis, prefix = redis_prefix
    mirror(redis, prefix, store, registry, challenger_only=15, champion_only=2)
    client = MlflowClient()
    registered = client.get_model_version(MODEL, registry.challenger)
    newer = str(client.create_model_version(MODEL, registered.source, registered.run_id).version)
    client.set_registered_model_alias(MODEL, CHALLENGER, newer)

    stale = CliRunner().invoke(app, ["promote", "--from-shadow", "--yes"])

    assert stale.exit_code == 1, stale.output
    assert f"'challenger' is now v{newer}, but the report compared v{registry.challenger}" in stale.output
    assert aliases(CHAMPION) == (registry.champion,)

    client.set_registered_model_alias(MODEL, CHALLENGER, registry.challenger)
    promoted = CliRunner().invoke(app, ["promote", "--from-shadow"])

    assert promoted.exit_code == 0, promoted.output
    assert f"champion is now v{registry.challenger} (previous: v{registry.champion})" in promoted.output
    assert aliases(CHAMPION, PREVIOUS) == (registry.challenger, registry.champion)
    tags = client.get_model_version(MODEL, registry.challenger).tags
    assert tags["promotion.by"] == "vehicles promote --from-shadow" and tags["shadow.recommendation"] == PROMOTE
    evidence = client.get_run(tags["shadow.run_id"])
    assert evidence.data.tags["promoted"] == registry.challenger and evidence.data.metrics["shadow.pairs"] == 117


def test_without_redis_the_report_says_so_and_promotes_nothing(
    mlflow_store: str, store: LabelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SHADOW_AUTO_PROMOTE", "true")

    run = report_shadow()

    assert run.report["pairs"] == 0 and run.report["recommendation"]["action"] == UNDECIDED
    assert "REDIS_URL is not set" in run.report["recommendation"]["reason"]
    assert not run.promotion.promoted
    assert MlflowClient().get_run(run.mlflow_run_id).data.metrics["shadow.pairs"] == 0
