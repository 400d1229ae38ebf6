"""The shadow report as the pipeline acts on it: its MLflow metrics and tags, whether its evidence
is about the versions the registry holds now, and the decision a promotion by evidence records.

The report itself (pairs, agreement, McNemar, the recommendation) is ``feedback.shadow``'s; the
hourly flow, ``vehicles shadow`` and ``vehicles promote --from-shadow`` all judge that one dict
with the functions here, so they cannot disagree about what it says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from feedback.shadow import PROMOTE, shadow_report
from tasks.registry.gate import DECISION_TAG, REASON_TAG

BY_TAG = "promotion.by"  # who promoted: the gate leaves it unset, a promotion by evidence names itself
PROMOTED_RUN_TAG = "promoted"  # on the report's MLflow run: the version it promoted


@dataclass(frozen=True)
class Promotion:
    """What a promotion by evidence did, or why it did nothing.

    Attributes:
        promoted: whether the champion alias moved.
        version: the version the report compared as the challenger (None without pairs).
        previous: the champion it replaced, when it moved.
        reason: one sentence for logs, the CLI and the artifact.
    """

    promoted: bool
    version: str | None
    previous: str | None
    reason: str


@dataclass(frozen=True)
class ShadowRun:
    """One run of the shadow-report flow.

    Attributes:
        report: ``feedback.shadow.shadow_report``'s dict.
        mlflow_run_id: the run in the monitoring experiment holding it.
        promotion: what the run's promotion step did.
        notes: what was left out while reading (unreadable entries, an unreadable label store).
    """

    report: dict
    mlflow_run_id: str
    promotion: Promotion
    notes: tuple[str, ...] = ()


def unavailable_report(reason: str) -> dict:
    """An empty report whose recommendation says why there are no pairs to judge."""
    report = shadow_report([], {})
    report["recommendation"]["reason"] = reason
    return report


def shadow_metrics(report: Mapping) -> dict[str, float]:
    """MLflow metrics, charted over the hourly runs: ``shadow.pairs``, ``shadow.labelled``,
    ``shadow.<attribute>.agreement`` (and its interval, the confidence shift) and, on labelled
    pairs, both accuracies and the McNemar p-value; latency percentiles of each version."""
    metrics = {"shadow.pairs": float(report["pairs"]), "shadow.labelled": float(report["labelled"])}
    for attribute, block in report["attributes"].items():
        prefix = f"shadow.{attribute}"
        low, high = block["agreement_interval"]
        accuracy = block["accuracy"]
        metrics |= {
            f"{prefix}.agreement": float(block["agreement"]),
            f"{prefix}.agreement_low": float(low),
            f"{prefix}.agreement_high": float(high),
            f"{prefix}.confidence_shift": float(block["confidence_shift"]),
            f"{prefix}.labelled": float(accuracy["labelled"]),
        }
        if accuracy["labelled"]:
            metrics |= {
                f"{prefix}.champion_accuracy": float(accuracy["champion"]),
                f"{prefix}.challenger_accuracy": float(accuracy["challenger"]),
                f"{prefix}.p_value": float(accuracy["p_value"]),
            }
    for side, percentiles in report["latency_ms"].items():
        metrics |= {f"shadow.{side}.latency_{name}_ms": float(ms) for name, ms in percentiles.items()}
    return metrics


def run_tags(report: Mapping) -> dict[str, str]:
    """Tags that let the MLflow UI filter shadow runs by the versions compared and the verdict."""
    tags = {"kind": "shadow", "recommendation": report["recommendation"]["action"]}
    for side in ("champion", "challenger"):
        if report[side] is not None:
            tags[side] = str(report[side])
    return tags


def evidence_refusal(
    report: Mapping,
    champion: str | None,
    shadowed: str | None,
    champion_alias: str = "champion",
    shadow_alias: str = "challenger",
) -> str | None:
    """Why the report cannot promote anything now, or None when its evidence is about the
    versions the registry holds: the challenger it compared is still behind ``shadow_alias``,
    and the champion it was compared with is still the champion.

    Args:
        report: the shadow report.
        champion: the version behind ``champion_alias`` now (None when there is none).
        shadowed: the version behind ``shadow_alias`` now (None when there is none).
        champion_alias: the alias serving answers with (``MODEL_ALIAS``).
        shadow_alias: the alias serving mirrors traffic to (``SHADOW_ALIAS``).
    """
    compared, against = report["challenger"], report["champion"]
    if compared is None:
        return f"no mirrored pairs, so no challenger to promote ({report['recommendation']['reason']})"
    if compared == champion:
        return f"v{compared} is already the {champion_alias}"
    if not shadow_alias:
        return "SHADOW_ALIAS is empty: serving mirrors no version, so the report's pairs are old"
    if shadowed != compared:
        now = f"is now v{shadowed}" if shadowed else "points to no version now"
        return (
            f"'{shadow_alias}' {now}, but the report compared v{compared}: the evidence is about another "
            "version; wait for pairs of the new one"
        )
    if champion != against:
        return (
            f"the {champion_alias} is now v{champion}, but the report compared v{compared} with v{against}: "
            "wait for pairs against the new champion"
        )
    return None


def decision_reason(report: Mapping, override: bool) -> str:
    """What the promoted version's ``promotion.reason`` says."""
    recommendation = report["recommendation"]
    if override:
        return (
            f"promoted by hand against the shadow report's recommendation "
            f"({recommendation['action']}: {recommendation['reason']})"
        )
    return f"shadow evidence against v{report['champion']}: {recommendation['reason']}"


def decision_tags(report: Mapping, evidence_run_id: str, by: str, override: bool) -> dict[str, str]:
    """Version tags recording a promotion by evidence, as the gate records its decision: the
    verdict and its reason, who decided, and the numbers it rested on (the whole report is the
    artifact of ``shadow.run_id``)."""
    tags = {
        DECISION_TAG: "promoted",
        REASON_TAG: decision_reason(report, override),
        BY_TAG: by,
        "shadow.run_id": evidence_run_id,
        "shadow.champion_version": str(report["champion"]),
        "shadow.pairs": str(report["pairs"]),
        "shadow.labelled": str(report["labelled"]),
        "shadow.recommendation": report["recommendation"]["action"],
    }
    for attribute, block in report["attributes"].items():
        tags[f"shadow.{attribute}.agreement"] = f"{block['agreement']:.6f}"
        accuracy = block["accuracy"]
        if accuracy["labelled"]:
            tags |= {
                f"shadow.{attribute}.labelled": str(accuracy["labelled"]),
                f"shadow.{attribute}.champion_accuracy": f"{accuracy['champion']:.6f}",
                f"shadow.{attribute}.challenger_accuracy": f"{accuracy['challenger']:.6f}",
                f"shadow.{attribute}.p_value": f"{accuracy['p_value']:.6g}",
            }
    return tags


def recommends_promotion(report: Mapping) -> bool:
    return report["recommendation"]["action"] == PROMOTE


def promotion_markdown(promotion: Promotion, run_url: str) -> str:
    """The lines the Prefect artifact adds below the report: what the run did about it, and where
    the evidence is kept."""
    if promotion.promoted:
        done = f"**Promoted v{promotion.version}** (previous champion: v{promotion.previous}): {promotion.reason}"
    else:
        done = f"Not promoted: {promotion.reason}"
    return f"\n{done}\n\nMLflow run: {run_url}\n"
