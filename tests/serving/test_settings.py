"""Settings from the environment, and an app whose import and construction do no I/O."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serving.settings import ServingSettings, get_settings

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

ROOT = Path(__file__).resolve().parents[2]


async def test_settings_defaults_and_environment(monkeypatch):
    for name in ("REDIS_URL", "API_KEY", "CORS_ORIGINS", "MLFLOW_TRACKING_URI", "MAX_BATCH_FILES"):
        monkeypatch.delenv(name, raising=False)
    defaults = get_settings()
    assert defaults.mlflow_tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert (defaults.model_name, defaults.model_alias) == ("vehicle-classifier", "champion")
    assert defaults.redis_url is None and defaults.api_key is None
    assert (defaults.max_batch_files, defaults.max_body_bytes, defaults.report_ttl_seconds) == (64, 10 * 2**20, 3600)
    assert defaults.log_dir == Path("logs") and defaults.inference_threads >= 1

    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("API_KEY", "k3y")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("MAX_BATCH_FILES", "8")
    configured = get_settings()
    assert configured.redis_url == "redis://cache:6379/1"
    assert configured.api_key.get_secret_value() == "k3y" and "k3y" not in repr(configured)
    assert configured.cors_origins == ["https://a.example", "https://b.example"]
    assert configured.max_batch_files == 8
    monkeypatch.setenv("REDIS_URL", "")
    assert get_settings().redis_url is None


async def test_settings_are_validated():
    with pytest.raises(ValueError):
        ServingSettings(max_batch_files=0)
    with pytest.raises(ValueError):
        ServingSettings(low_confidence_threshold=1.5)


async def test_importing_and_building_the_app_does_no_io(tmp_path):
    # A fresh interpreter in an empty folder: importing must not create logs/ or mlruns/,
    # connect anywhere or load a model; building the app must not either.
    script = (
        "import serving.app, serving.__main__\n"
        "from serving.settings import ServingSettings\n"
        "serving.app.create_app(ServingSettings(redis_url='redis://127.0.0.1:1/0', "
        "mlflow_tracking_uri='http://127.0.0.1:1'))\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, env={"PYTHONPATH": str(ROOT)})
    assert list(tmp_path.iterdir()) == []
