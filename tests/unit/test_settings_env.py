"""The training and monitoring settings read the shared registry names unprefixed, the rest prefixed."""

from __future__ import annotations

import pytest

from flows.monitor_settings import MonitorSettings
from flows.settings import PipelineSettings

pytestmark = pytest.mark.unit

SHARED = {
    "MLFLOW_TRACKING_URI": ("mlflow_tracking_uri", "sqlite:///mlruns/mlflow.db"),
    "MLFLOW_ARTIFACT_ROOT": ("mlflow_artifact_root", "mlruns/artifacts"),
    "MLFLOW_UI_URL": ("mlflow_ui_url", "http://127.0.0.1:5000"),
    "MODEL_NAME": ("model_name", "vehicle-classifier"),
    "MODEL_ALIAS": ("model_alias", "champion"),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SHARED:
        for prefix in ("", "PIPELINE_", "MONITOR_"):
            monkeypatch.delenv(prefix + name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("settings_class", [PipelineSettings, MonitorSettings])
def test_shared_fields_have_the_same_defaults(clean_env, settings_class):
    settings = settings_class()
    assert {field: getattr(settings, field) for field, _ in SHARED.values()} == dict(SHARED.values())


@pytest.mark.parametrize(("settings_class", "prefix"), [(PipelineSettings, "PIPELINE_"), (MonitorSettings, "MONITOR_")])
def test_shared_fields_are_read_by_their_unprefixed_names_only(clean_env, settings_class, prefix):
    for name, (field, _) in SHARED.items():
        clean_env.setenv(name, f"set-{field}")
        clean_env.setenv(prefix + name, "ignored")
    settings = settings_class()
    assert {field: getattr(settings, field) for field, _ in SHARED.values()} == {
        field: f"set-{field}" for field, _ in SHARED.values()
    }


def test_own_fields_take_their_prefix(clean_env):
    clean_env.setenv("PIPELINE_TRAINING_DATA", "data/batches")
    clean_env.setenv("MONITOR_EXPERIMENT", "drift-elsewhere")
    clean_env.setenv("MONITOR_P_VALUE", "0.01")
    clean_env.setenv("EXPERIMENT", "unprefixed")
    assert PipelineSettings().training_data == "data/batches"
    monitor = MonitorSettings()
    assert (monitor.experiment, monitor.p_value) == ("drift-elsewhere", 0.01)
