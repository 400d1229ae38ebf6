"""Per-region statistics under ``/api/stats``."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from serving.http.dependencies import REGION_RULE, REGION_SCHEMA, valid_region
from serving.http.errors import ApiError
from serving.http.schemas import RegionsBody, RegionStatsBody, error_responses
from serving.learning.service import LearningLoop
from serving.monitoring.region_stats import RegionStats, RegionSummary

ALL_TRAFFIC = "all"  # the drift monitor's name for the whole traffic


class StatsController(Controller):
    """Request counts per endpoint, predicted-class distribution and decisions, per ``X-Region``."""

    path = "/api/stats"
    tags = ["stats"]

    @get("/regions", responses=error_responses(401, 429))
    async def regions(
        self, stats: NamedDependency[RegionStats], learning: NamedDependency[LearningLoop]
    ) -> RegionsBody:
        """Every region seen, with its counts, latest drift status (``drift`` at the top: the whole
        traffic's) and the served version's online accuracy from labels (``feedback``, null before
        any unbiased label); ``storage`` says whether the counts come from Redis."""
        summaries, storage = await stats.all()
        drift = await stats.drift()
        feedback = await learning.feedback_by_region(learning.served_version())
        regions = [_body(s, drift, feedback) for s in summaries]
        return {"storage": storage, "drift": drift.get(ALL_TRAFFIC), "regions": regions}

    @get("/regions/{region:str}", responses=error_responses(400, 401, 404, 429))
    async def region(
        self,
        region: Annotated[
            str,
            PathParameter(
                description=f"A region name as sent in X-Region ({REGION_RULE}).", schema_extra=REGION_SCHEMA
            ),
        ],
        stats: NamedDependency[RegionStats],
        learning: NamedDependency[LearningLoop],
    ) -> RegionStatsBody:
        """One region's counts, latest drift status and online accuracy (``feedback``)."""
        summary, _ = await stats.one(valid_region(region))
        if summary is None:
            raise ApiError(404, "region_not_found", f"no requests recorded for region '{region}'")
        feedback = await learning.feedback_by_region(learning.served_version())
        return _body(summary, await stats.drift(), feedback)


def _body(summary: RegionSummary, drift: dict[str, dict], feedback: dict[str, dict]) -> RegionStatsBody:
    return {
        "region": summary.region,
        "total_requests": summary.total_requests,
        "requests": summary.requests,
        "predictions": summary.predictions,
        "decisions": summary.decisions,
        "drift": drift.get(summary.region),
        "feedback": feedback.get(summary.region),
    }
