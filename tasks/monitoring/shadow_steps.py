"""The shadow report's adapters: the pairs from the Redis stream every serving replica appends to,
the labels from the label store, the MLflow run, the Prefect artifact, and promotion by evidence.

Reading never fails the report: no Redis, an empty stream or an unreadable label store each give
a report that says what is missing. Promotion takes the registry lock like every alias move.
"""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from feedback.shadow import PAIR_FIELD, Pair, report_markdown, shadow_key, shadow_report
from tasks.data.harvest_steps import existing_store
from tasks.monitoring.drift_steps import redis_client
from tasks.monitoring.shadow import (
    PROMOTED_RUN_TAG,
    Promotion,
    decision_reason,
    decision_tags,
    evidence_refusal,
    promotion_markdown,
    recommends_promotion,
    run_tags,
    shadow_metrics,
    unavailable_report,
)
from tasks.monitoring.summary import TrackedRun
from tasks.registry.gate import contract_changes
from tasks.registry.lock import registry_lock
from tasks.registry.versions import promote, version_contract, version_for_alias
from tasks.tracking import ensure_experiment, run_url
from vehicle_model.records import as_text

PAGE = 1000
PROMOTED_EVENT = "vehicle.model.promoted"  # the gate's event: automations see one kind of promotion


def read_pairs(redis: Redis, prefix: str, limit: int) -> tuple[list[Pair], int]:
    """The newest ``limit`` pairs of the shadow stream, oldest first, and how many entries could
    not be read (skipped: one bad entry must not hide the rest).

    Newest, because the report judges only the latest pair of versions.
    """
    key = shadow_key(prefix)
    entries: list = []
    cursor = "+"
    while len(entries) < limit:
        page = redis.xrevrange(key, max=cursor, min="-", count=min(PAGE, limit - len(entries)))
        entries.extend(page)
        if len(page) < PAGE:
            break
        cursor = f"({as_text(page[-1][0])}"
    pairs, unreadable = [], 0
    for _, fields in reversed(entries):
        raw = fields.get(PAIR_FIELD.encode(), fields.get(PAIR_FIELD))
        try:
            pairs.append(Pair.from_json(raw))
        except (TypeError, ValueError, KeyError):  # None, not JSON, or not a pair
            unreadable += 1
    return pairs, unreadable


def read_labels(url: str, item_ids: set[str]) -> dict[str, dict[str, str]]:
    """Item id -> the labels clients and reviewers gave, for the mirrored items only.

    A store that does not exist yet is no labels; it is never created here.
    """
    store = existing_store(url)
    if store is None:
        return {}
    try:
        rows = store.labelled_rows()
    finally:
        store.close()
    return {row.item_id: row.labels for row in rows if row.item_id in item_ids}


def gather_report(
    redis_url: str | None, prefix: str, labels_url: str, max_pairs: int, alpha: float, min_pairs: int
) -> tuple[dict, list[str]]:
    """The shadow report over the stream's pairs and their labels, and notes on what was left out.

    Args:
        redis_url: serving's Redis (``REDIS_URL``); unset gives a report saying so.
        prefix: serving's ``REDIS_KEY_PREFIX``.
        labels_url: the label store (``LABELS_DATABASE_URL``).
        max_pairs: most pairs read (the newest).
        alpha: the McNemar level that counts as evidence.
        min_pairs: fewest pairs a recommendation to act rests on.
    """
    if not redis_url:
        return unavailable_report(
            "REDIS_URL is not set: serving appends the pairs to its Redis; "
            "set REDIS_URL and REDIS_KEY_PREFIX to the values serving uses"
        ), []
    try:
        redis = redis_client(redis_url)
    except ValueError as exc:  # not a redis:// URL
        return unavailable_report(f"REDIS_URL is not a Redis URL ({exc})"), []
    try:
        pairs, unreadable = read_pairs(redis, prefix, max_pairs)
    except RedisError as exc:
        return unavailable_report(f"cannot read the stream {shadow_key(prefix)} from Redis: {exc}"), []
    finally:
        redis.close()
    notes = [f"{unreadable} entries of {shadow_key(prefix)} are not pairs; left out"] if unreadable else []
    try:
        labels = read_labels(labels_url, {pair.item_id for pair in pairs}) if pairs else {}
    except (SQLAlchemyError, OSError, ValueError) as exc:  # ValueError: not a SQLite or PostgreSQL URL
        labels = {}
        notes.append(f"label store {labels_url} unreadable ({exc}): accuracy not compared")
    return shadow_report(pairs, labels, alpha=alpha, min_pairs=min_pairs), notes


def track_shadow(
    report: dict, tags: dict[str, str], experiment: str, artifact_root: str | None, ui_url: str
) -> TrackedRun:
    """One MLflow run in the monitoring experiment: the report's numbers as metrics, the versions
    and the verdict as tags, the whole report as ``shadow.json``."""
    experiment_id = ensure_experiment(experiment, artifact_root)
    name = f"shadow v{report['challenger']} vs v{report['champion']}" if report["pairs"] else "shadow (no pairs)"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags | run_tags(report)) as run:
        mlflow.log_metrics(shadow_metrics(report))
        mlflow.log_dict(report, "shadow.json")
        return TrackedRun(experiment, run.info.run_id, run_url(ui_url, experiment_id, run.info.run_id))


def stale_evidence(
    client: MlflowClient, model_name: str, champion_alias: str, shadow_alias: str, report: dict
) -> str | None:
    """Why the report's evidence is not about the versions behind the aliases now (None when it is)."""

    def behind(alias: str) -> str | None:
        found = version_for_alias(client, model_name, alias) if alias else None
        return None if found is None else str(found.version)

    return evidence_refusal(report, behind(champion_alias), behind(shadow_alias), champion_alias, shadow_alias)


def promote_on_evidence(
    client: MlflowClient,
    model_name: str,
    champion_alias: str,
    shadow_alias: str,
    report: dict,
    evidence_run_id: str,
    by: str,
    override: bool = False,
    contract_checked: bool = False,
) -> Promotion:
    """Makes the report's challenger the champion, if the registry still holds the two versions it
    compared and the report recommends it (or ``override``: a person decided). The caller holds
    the registry lock.

    A contract change is refused unless ``contract_checked`` (a person saw it and confirmed), as
    the gate never promotes one itself. The decision is recorded as version tags before the
    aliases move, as the gate records its own: a run stopped in between never leaves a champion
    without its reason.
    """
    version = report["challenger"]
    refusal = stale_evidence(client, model_name, champion_alias, shadow_alias, report)
    if refusal is None and not (override or recommends_promotion(report)):
        recommendation = report["recommendation"]
        refusal = f"the shadow report says {recommendation['action']}: {recommendation['reason']}"
    if refusal is None and not contract_checked:
        changes = contract_changes(
            version_contract(model_name, report["champion"]), version_contract(model_name, version)
        )
        if changes:
            refusal = (
                f"v{version} changes what clients receive ({'; '.join(changes)}): "
                "promote by hand with `vehicles promote --from-shadow --yes`"
            )
    if refusal is not None:
        return Promotion(False, version, None, refusal)
    for key, value in decision_tags(report, evidence_run_id, by, override).items():
        client.set_model_version_tag(model_name, version, key, value)
    previous = promote(client, model_name, version, champion_alias)
    client.set_tag(evidence_run_id, PROMOTED_RUN_TAG, version)
    return Promotion(True, version, previous, decision_reason(report, override))


def announce_promotion(model_name: str, promotion: Promotion, evidence_run_id: str) -> None:
    """Emits the gate's ``vehicle.model.promoted`` for a promotion by evidence."""
    emit_event(
        event=PROMOTED_EVENT,
        resource={
            "prefect.resource.id": f"mlflow.model-version.{model_name}.{promotion.version}",
            "prefect.resource.name": model_name,
        },
        payload={
            "version": promotion.version,
            "previous_champion": promotion.previous,
            "reason": promotion.reason,
            "by": "shadow",
            "mlflow_run_id": evidence_run_id,
        },
    )


@task(name="read-shadow-pairs", cache_policy=NO_CACHE)
def read_shadow_task(
    redis_url: str | None, prefix: str, labels_url: str, max_pairs: int, alpha: float, min_pairs: int
) -> tuple[dict, list[str]]:
    report, notes = gather_report(redis_url, prefix, labels_url, max_pairs, alpha, min_pairs)
    logger = get_run_logger()
    for note in notes:
        logger.warning(note)
    logger.info(
        "%d mirrored pairs (%d labelled): %s, %s",
        report["pairs"],
        report["labelled"],
        report["recommendation"]["action"],
        report["recommendation"]["reason"],
    )
    return report, notes


@task(name="track-shadow", cache_policy=NO_CACHE)
def track_shadow_task(
    report: dict, tags: dict[str, str], experiment: str, artifact_root: str | None, ui_url: str
) -> TrackedRun:
    return track_shadow(report, tags, experiment, artifact_root, ui_url)


@task(name="promote-on-evidence", cache_policy=NO_CACHE)
def promote_on_evidence_task(
    report: dict, run: TrackedRun, model_name: str, champion_alias: str, shadow_alias: str, auto_promote: bool
) -> Promotion:
    """Promotes the challenger when the report recommends it and ``auto_promote`` (the
    ``SHADOW_AUTO_PROMOTE`` policy) allows, under the registry lock; never across a contract change."""
    logger = get_run_logger()
    version = report["challenger"]
    if not recommends_promotion(report):
        return Promotion(False, version, None, f"the recommendation is {report['recommendation']['action']}")
    if not auto_promote:
        reason = "SHADOW_AUTO_PROMOTE is off: `vehicles promote --from-shadow` promotes it"
        logger.info("v%s is recommended for promotion; %s", version, reason)
        return Promotion(False, version, None, reason)
    with registry_lock(model_name):
        promotion = promote_on_evidence(
            MlflowClient(), model_name, champion_alias, shadow_alias, report, run.run_id, by="shadow-report flow"
        )
    if promotion.promoted:
        announce_promotion(model_name, promotion, run.run_id)
        logger.info("Promoted %s v%s to %s: %s", model_name, version, champion_alias, promotion.reason)
    else:
        logger.warning("Not promoted: %s", promotion.reason)
    return promotion


@task(name="publish-shadow", cache_policy=NO_CACHE)
def publish_shadow_task(report: dict, run: TrackedRun, promotion: Promotion) -> None:
    """The report as a Prefect markdown artifact, with what the run did about it."""
    create_markdown_artifact(
        key="shadow-report",
        markdown=report_markdown(report) + promotion_markdown(promotion, run.url),
        description="The challenger against the champion on mirrored live traffic",
    )
