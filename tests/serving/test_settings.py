"""The serving building blocks on their own: settings, confidence, reports, stores, stats."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from serving.inference import class_counts, confidence, present, top_k
from serving.reports import Thresholds, build_report
from serving.settings import ServingSettings, get_settings
from serving.stats import OVERFLOW_REGION, RegionStats
from serving.stores import BoundedMemoryStore, RedisGuard, ResilientStore
from serving.uploads import display_name

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

ROOT = Path(__file__).resolve().parents[2]


def prediction(vehicle_type: dict[str, float], color: dict[str, float]) -> dict:
    return {
        "vehicle_type": {"label": max(vehicle_type, key=vehicle_type.get), "probabilities": vehicle_type},
        "color": {"label": max(color, key=color.get), "probabilities": color},
    }


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


async def test_confidence_measures():
    assert confidence({"a": 1.0, "b": 0.0}) == {
        "max_probability": 1.0, "margin": 1.0, "entropy": 0.0, "normalized_entropy": 0.0}
    even = confidence({"a": 0.5, "b": 0.5})
    assert even["margin"] == 0 and even["entropy"] == pytest.approx(math.log(2))
    assert even["normalized_entropy"] == pytest.approx(1.0)
    assert top_k({"a": 0.2, "b": 0.7, "c": 0.1}, 2) == [
        {"label": "b", "probability": 0.7}, {"label": "a", "probability": 0.2}]


async def test_class_counts_and_presentation():
    records = [prediction({"suv": 0.9, "van": 0.1}, {"red": 0.6, "blue": 0.4}),
               prediction({"suv": 0.2, "van": 0.8}, {"red": 0.7, "blue": 0.3})]
    assert class_counts(records) == {"vehicle_type": {"suv": 1, "van": 1}, "color": {"red": 2}}
    shown = present(records[0], 1)
    assert shown["color"]["top_k"] == [{"label": "red", "probability": 0.6}]


async def test_report_recommends_review_for_low_confidence_and_close_calls(small_model):
    record = prediction({"suv": 0.45, "van": 0.35, "bus": 0.2}, {"red": 0.55, "blue": 0.45})
    report = build_report("v1", record, small_model, Thresholds(min_probability=0.5, min_margin=0.15), 60)
    assert report["analysis"]["low_confidence"] == ["color", "vehicle_type"]
    lines = dict(zip(["vehicle_type", "color"], report["recommendations"], strict=True))
    assert "low confidence in 'suv'" in lines["vehicle_type"]
    assert "'red' (55%) and 'blue' (45%) are close" in lines["color"]
    sure = build_report("v2", prediction({"suv": 0.95, "van": 0.05}, {"red": 0.9, "blue": 0.1}), small_model,
                        Thresholds(), 60)
    assert sure["analysis"]["low_confidence"] == [] and "no manual review" in sure["recommendations"][0]
    assert sure["analysis"]["overall_confidence"] == 0.9


async def test_bounded_memory_store_evicts_least_recently_used_and_expires():
    store = BoundedMemoryStore(max_items=2)
    await store.set("a", b"1")
    await store.set("b", b"2")
    await store.get("a")
    await store.set("c", b"3")
    assert await store.get("b") is None and await store.get("a") == b"1" and await store.get("c") == b"3"
    await store.set("short", "x", expires_in=-1)
    assert await store.get("short") is None and not await store.exists("short")


async def test_resilient_store_without_redis_is_a_memory_store():
    guard = RedisGuard(None)
    store = ResilientStore(guard, "ns", max_items=10)
    await store.set("k", "v", expires_in=30)
    assert guard.state == "memory"
    assert await store.get("k") == b"v" and 0 < await store.expires_in("k") <= 30
    await store.delete("k")
    assert await store.get("k") is None


async def test_region_names_beyond_the_bound_are_counted_as_other():
    stats = RegionStats(RedisGuard(None), "p", max_regions=2)
    for region in ("a", "b", "c", "d"):
        await stats.record(region, "classify")
    summaries, storage = await stats.all()
    assert storage == "memory"
    assert {s.region: s.requests["classify"] for s in summaries} == {"a": 1, "b": 1, OVERFLOW_REGION: 2}


async def test_display_name_strips_control_characters():
    assert display_name("a\x00b\x1f\x7f.png") == "ab.png"
    assert display_name("\x00") is None and display_name(None) is None
    assert len(display_name("x" * 500)) == 100


async def test_settings_are_validated():
    with pytest.raises(ValueError):
        ServingSettings(max_batch_files=0)
    with pytest.raises(ValueError):
        ServingSettings(low_confidence_threshold=1.5)
