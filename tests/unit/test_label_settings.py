"""The pipeline, the monitor and serving read the learning loop's store by the same names, with
the same defaults, so one environment points all three at the same labels and images."""

from __future__ import annotations

import pytest

from flows.monitor_settings import MonitorSettings
from flows.settings import PipelineSettings
from serving.settings import ServingSettings

pytestmark = pytest.mark.unit

SHARED = {
    "LABELS_DATABASE_URL": ("labels_database_url", "postgresql://labels@db/labels"),
    "REVIEW_IMAGES_URL": ("review_images_url", "s3://bucket/review"),
    "REVIEW_RETENTION_DAYS": ("review_retention_days", "7.5"),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [*SHARED, "PIPELINE_HARVEST_MIN_LABELS"]:
        for prefix in ("", "PIPELINE_", "MONITOR_"):
            monkeypatch.delenv(prefix + name, raising=False)
    return monkeypatch


def test_the_defaults_are_servings(clean_env: pytest.MonkeyPatch) -> None:
    serving = ServingSettings()
    for settings in (PipelineSettings(), MonitorSettings()):
        assert {field: getattr(settings, field) for field, _ in SHARED.values()} == {
            field: getattr(serving, field) for field, _ in SHARED.values()
        }
        assert settings.harvest_min_labels == 50


@pytest.mark.parametrize("settings_class", [PipelineSettings, MonitorSettings, ServingSettings])
def test_the_shared_names_are_read_unprefixed(clean_env: pytest.MonkeyPatch, settings_class) -> None:
    for name, (_, value) in SHARED.items():
        clean_env.setenv(name, value)
        clean_env.setenv(f"MONITOR_{name}", "ignored")
    settings = settings_class()
    assert settings.labels_database_url == "postgresql://labels@db/labels"
    assert settings.review_images_url == "s3://bucket/review"
    assert settings.review_retention_days == 7.5


def test_the_harvest_threshold_is_one_setting_for_the_pipeline_and_the_monitor(clean_env) -> None:
    clean_env.setenv("PIPELINE_HARVEST_MIN_LABELS", "12")
    assert PipelineSettings().harvest_min_labels == MonitorSettings().harvest_min_labels == 12
    clean_env.setenv("PIPELINE_HARVEST_MIN_LABELS", "0")
    with pytest.raises(ValueError, match="harvest_min_labels|PIPELINE_HARVEST_MIN_LABELS"):
        PipelineSettings()
