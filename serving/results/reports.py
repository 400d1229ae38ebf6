"""Vehicle reports: predictions, their decisions, a confidence analysis and what to do about doubtful ones.

Reports are JSON in the report store under the vehicle id, expiring after the report TTL.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from serving.model.source import LoadedModel
from serving.results.presentation import present
from serving.storage.stores import ResilientStore
from vehicle_model.decisions import CONFIDENT, UNDETERMINED
from vehicle_model.records import Prediction

VEHICLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VEHICLE_ID_RULE = "1-64 characters from A-Z, a-z, 0-9, '_' and '-'"
# Who made a report: stored with it, never shown.
OWNER_FIELD = "_owner"


@dataclass(frozen=True)
class Thresholds:
    """Below ``min_probability`` or ``min_margin`` an attribute is flagged for review."""

    min_probability: float = 0.6
    min_margin: float = 0.15


def new_vehicle_id() -> str:
    return uuid.uuid4().hex


def build_report(
    vehicle_id: str,
    prediction: Prediction,
    model: LoadedModel,
    thresholds: Thresholds,
    ttl_seconds: int,
    top_k: int = 3,
) -> dict[str, Any]:
    """The report for one image; JSON-able.

    An attribute is recommended for review when the model's decision is not ``confident``
    (its thresholds, fitted with the version) or when it falls below this deployment's
    ``thresholds``; ``analysis`` lists the two separately.
    """
    predictions = present(prediction, top_k)
    flagged = {
        attribute: reason
        for attribute, result in predictions.items()
        if (reason := _doubt(attribute, result, thresholds)) is not None
    }
    created = datetime.now(UTC)
    confidences = [r["confidence"]["max_probability"] for r in predictions.values()]
    return {
        "vehicle_id": vehicle_id,
        "created_at": created.isoformat(timespec="seconds"),
        "expires_at": (created + timedelta(seconds=ttl_seconds)).isoformat(timespec="seconds"),
        "model": {"name": model.name, "version": model.version},
        "predictions": predictions,
        "analysis": {
            "overall_confidence": round(min(confidences), 6) if confidences else 0.0,
            "low_confidence": sorted(a for a, r in predictions.items() if _below(r, thresholds)),
            "not_confident": sorted(a for a, r in predictions.items() if r["decision"] != CONFIDENT),
            "thresholds": {"min_probability": thresholds.min_probability, "min_margin": thresholds.min_margin},
        },
        "recommendations": list(flagged.values())
        or ["Every attribute is confident and above the confidence thresholds; no manual review needed."],
    }


def _below(result: dict[str, Any], thresholds: Thresholds) -> bool:
    confidence = result["confidence"]
    return confidence["max_probability"] < thresholds.min_probability or (
        len(result["top_k"]) > 1 and confidence["margin"] < thresholds.min_margin
    )


def _doubt(attribute: str, result: dict[str, Any], thresholds: Thresholds) -> str | None:
    """A recommendation when one attribute's prediction is doubtful, else None.

    An undetermined attribute comes first: no threshold makes its label worth reviewing.
    """
    confidence, ranked = result["confidence"], result["top_k"]
    label, top = ranked[0]["label"], confidence["max_probability"]
    if result["decision"] == UNDETERMINED:
        return (
            f"{attribute}: undetermined ({result['reason']}); '{label}' is only the most probable class, "
            "do not rely on it. Confirm it another way or upload a photo that shows it."
        )
    if top < thresholds.min_probability:
        alternatives = ", ".join(f"{r['label']} {r['probability']:.0%}" for r in ranked[1:])
        return (
            f"{attribute}: low confidence in '{label}' ({top:.0%}, below "
            f"{thresholds.min_probability:.0%}); alternatives {alternatives or 'none'}. Confirm manually "
            "or upload a sharper, well-lit photo showing the whole vehicle."
        )
    if len(ranked) > 1 and confidence["margin"] < thresholds.min_margin:
        runner_up = ranked[1]
        return (
            f"{attribute}: '{label}' ({top:.0%}) and '{runner_up['label']}' "
            f"({runner_up['probability']:.0%}) are close; review before relying on it."
        )
    if result["decision"] != CONFIDENT:
        return f"{attribute}: '{label}' ({top:.0%}) is uncertain: {result['reason']}; review before relying on it."
    return None


class ReportStore:
    """Reports by vehicle id, with a time to live, each readable only by the client that made it.

    Args:
        store: the underlying key/value store (a ``ResilientStore`` in the app).
        ttl_seconds: how long a report is kept.
    """

    def __init__(self, store: ResilientStore, ttl_seconds: int) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds

    async def create(self, report: dict[str, Any], owner: str) -> bool:
        """Stores a new report; False (nothing written) when its vehicle id is taken."""
        stored = {**report, OWNER_FIELD: owner}
        return await self.store.add(report["vehicle_id"], json.dumps(stored), expires_in=self.ttl_seconds)

    async def get(self, vehicle_id: str, owner: str) -> dict[str, Any] | None:
        """The report, or None when absent, expired or made by another client.

        Raises RedisUnavailable when the report is not in memory and Redis could not be asked.
        """
        raw = await self.store.lookup(vehicle_id)
        if raw is None:
            return None
        report = json.loads(raw)
        if not hmac.compare_digest(str(report.pop(OWNER_FIELD, "")), owner):
            return None
        return report
