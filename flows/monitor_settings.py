"""Settings of the drift monitor, read from the environment when built.

Redis, the registry and the label store are read with the serving app's variable names
(``REDIS_URL``, ``REDIS_KEY_PREFIX``, ``MLFLOW_TRACKING_URI``, ``MODEL_NAME``, ``MODEL_ALIAS``,
``LABELS_DATABASE_URL``, ``SHADOW_ALIAS``), so one environment serves both; the thresholds take the
``MONITOR_`` prefix, the shadow report's policy the ``SHADOW_`` one serving's shadow settings use.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from feedback.shadow import ALPHA, MIN_PAIRS
from flows.settings import LabelSettings, RegistrySettings
from tasks.monitoring.drift import Thresholds
from tasks.registry.aliases import CHALLENGER


class MonitorSettings(RegistrySettings, LabelSettings):
    """Where the log, the shadow pairs and the labels are, which model they are compared for, when a
    difference is drift, and when the shadow's evidence promotes."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_")

    redis_url: str | None = Field(None, alias="REDIS_URL")
    redis_key_prefix: str = Field("vehicles", alias="REDIS_KEY_PREFIX")
    experiment: str = "vehicle-monitoring"
    p_value: float = Field(Thresholds.p_value, gt=0, lt=1)
    min_effect: float = Field(Thresholds.min_effect, ge=0, le=1)
    feature_share: float = Field(Thresholds.feature_share, gt=0, le=1)
    min_records: int = Field(Thresholds.min_records, ge=2)
    max_records: int = Field(100_000, ge=1, description="most records (and shadow pairs) one run reads")
    shadow_alias: str = Field(CHALLENGER, alias="SHADOW_ALIAS", description="the alias serving mirrors traffic to")
    shadow_auto_promote: bool = Field(
        False,
        alias="SHADOW_AUTO_PROMOTE",
        description="the hourly shadow report promotes the challenger when it recommends it (off: a person does)",
    )
    shadow_alpha: float = Field(ALPHA, gt=0, lt=1, alias="SHADOW_ALPHA", description="McNemar level that is evidence")
    shadow_min_pairs: int = Field(
        MIN_PAIRS, ge=1, alias="SHADOW_MIN_PAIRS", description="fewest pairs a recommendation to act rests on"
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(self.p_value, self.min_effect, self.feature_share, self.min_records)

    def shadow_report(self) -> tuple[dict, list[str]]:
        """The shadow report over serving's pairs and their labels, with notes on what was left
        out (``tasks.monitoring.shadow_steps.gather_report`` on these settings)."""
        from tasks.monitoring.shadow_steps import gather_report

        return gather_report(
            self.redis_url,
            self.redis_key_prefix,
            self.labels_database_url,
            self.max_records,
            self.shadow_alpha,
            self.shadow_min_pairs,
        )


def get_monitor_settings() -> MonitorSettings:
    return MonitorSettings()
