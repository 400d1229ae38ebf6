"""Every answer says whether to trust it: each decision kind through the HTTP API.

The registry's v1 carries thresholds of 0 (confident unless the frame cannot carry the
attribute), v2 none; a threshold above 1 is never reached (uncertain). A greyscale frame
makes colour undetermined whatever the threshold.
"""

from __future__ import annotations

import dataclasses

import pytest
from litestar.testing import AsyncTestClient
from mlflow import MlflowClient
from serving_helpers import BATCH, CLASSIFY, REPORT, greyscale_png, metric, policy_at

from serving.app import create_app
from serving.model.service import ModelService
from serving.model.source import LoadedModel
from vehicle_model.decisions import NO_POLICY_REASON

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

GREYSCALE_REASON = "color cannot be told on a greyscale frame"


def upload(data: bytes, name: str = "car.png") -> dict:
    return {"file": (name, data, "application/octet-stream")}


def decisions(predictions: dict) -> dict[str, tuple[str, str | None]]:
    return {attribute: (result["decision"], result.get("reason")) for attribute, result in predictions.items()}


def with_threshold(model: LoadedModel, threshold: float) -> LoadedModel:
    """``model`` with a real decision policy of one threshold for every attribute."""
    classifier = dataclasses.replace(model.classifier, policy=policy_at(threshold, model.classifier.attributes))
    return dataclasses.replace(model, classifier=classifier)


async def test_answers_above_the_versions_thresholds_are_confident(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        response = await client.post(CLASSIFY, files=upload(sample_images["jpeg"], "car.jpg"))
    assert response.status_code == 200
    assert decisions(response.json()["predictions"]) == {
        "vehicle_type": ("confident", None),
        "color": ("confident", None),
    }


async def test_colour_on_a_greyscale_frame_is_undetermined_and_keeps_its_label(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        response = await client.post(CLASSIFY, files=upload(greyscale_png(sample_images["jpeg"])))
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert decisions(predictions) == {"vehicle_type": ("confident", None), "color": ("undetermined", GREYSCALE_REASON)}
    assert predictions["color"]["label"] == predictions["color"]["top_k"][0]["label"]


async def test_answers_below_the_threshold_are_uncertain_and_the_batch_counts_each_kind(
    make_settings, small_model, sample_images
):
    files = [
        ("files", ("colour.jpg", sample_images["jpeg0"], "image/jpeg")),
        ("files", ("night.png", greyscale_png(sample_images["jpeg1"]), "image/png")),
        ("files", ("notes.txt", b"not an image", "text/plain")),
    ]
    service = ModelService(None, with_threshold(small_model, 1.5))
    async with AsyncTestClient(create_app(make_settings(), model_service=service)) as client:
        response = await client.post(BATCH, files=files)
    assert response.status_code == 200
    body = response.json()
    colour, night, bad = body["results"]
    for attribute, (decision, reason) in decisions(colour["predictions"]).items():
        assert decision == "uncertain"
        assert reason.endswith(f"is below this version's threshold 1.500 for {attribute}")
    assert decisions(night["predictions"])["color"] == ("undetermined", GREYSCALE_REASON)
    assert decisions(night["predictions"])["vehicle_type"][0] == "uncertain"
    assert bad["predictions"] is None
    assert body["summary"]["decisions"] == {
        "vehicle_type": {"confident": 0, "uncertain": 2, "undetermined": 0},
        "color": {"confident": 0, "uncertain": 1, "undetermined": 1},
    }


async def test_a_version_registered_without_thresholds_answers_uncertain(make_settings, registry_uri, sample_images):
    MlflowClient(registry_uri).set_registered_model_alias("vehicle-classifier", "champion", "2")
    async with AsyncTestClient(create_app(make_settings())) as client:
        response = await client.post(CLASSIFY, files=upload(sample_images["jpeg"], "car.jpg"))
    assert response.json()["model"]["version"] == "2"
    assert decisions(response.json()["predictions"]) == {
        "vehicle_type": ("uncertain", NO_POLICY_REASON),
        "color": ("uncertain", NO_POLICY_REASON),
    }


async def test_report_shows_each_decision_as_json_and_as_a_badge_in_the_page(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        created = await client.post(
            REPORT, files=upload(greyscale_png(sample_images["jpeg2"])), data={"vehicle_id": "night-cam-1"}
        )
        page = await client.get(f"{REPORT}/night-cam-1", params={"format": "html"})
    report = created.json()
    assert decisions(report["predictions"]) == {
        "vehicle_type": ("confident", None),
        "color": ("undetermined", GREYSCALE_REASON),
    }
    assert report["analysis"]["not_confident"] == ["color"]
    assert any(line.startswith(f"color: undetermined ({GREYSCALE_REASON})") for line in report["recommendations"])
    assert page.status_code == 200
    assert '<span class="badge undetermined">undetermined</span>' in page.text
    assert '<span class="badge confident">confident</span>' in page.text
    assert GREYSCALE_REASON in page.text


async def test_region_stats_and_metrics_count_decisions_per_attribute(make_settings, sample_images):
    async with AsyncTestClient(create_app(make_settings())) as client:
        for image in (sample_images["jpeg3"], greyscale_png(sample_images["jpeg3"])):
            await client.post(CLASSIFY, files=upload(image), headers={"X-Region": "night-shift"})
        region = (await client.get("/api/stats/regions/night-shift")).json()
        everything = (await client.get("/api/stats/regions")).json()
        text = (await client.get("/metrics")).text
    expected = {
        "vehicle_type": {"confident": 2, "uncertain": 0, "undetermined": 0},
        "color": {"confident": 1, "uncertain": 0, "undetermined": 1},
    }
    assert region["decisions"] == expected
    assert {r["region"]: r["decisions"] for r in everything["regions"]} == {"night-shift": expected}
    assert metric(text, "vehicle_decisions_total", attribute="color", decision="undetermined") == 1
    assert metric(text, "vehicle_decisions_total", attribute="color", decision="confident") == 1
    assert metric(text, "vehicle_decisions_total", attribute="vehicle_type", decision="confident") == 2


async def test_openapi_documents_the_decision_and_its_reason(make_settings):
    async with AsyncTestClient(create_app(make_settings())) as client:
        schemas = (await client.get("/docs/openapi.json")).json()["components"]["schemas"]
    answer = schemas["AttributePrediction"]
    decision = answer["properties"]["decision"]
    assert decision["enum"] == ["confident", "uncertain", "undetermined"] and "threshold" in decision["description"]
    assert "reason" in answer["properties"] and answer["properties"]["reason"]["description"]
    assert set(answer["required"]) == {"label", "top_k", "confidence", "decision"}, "reason only when not confident"
    counts = {"$ref": "#/components/schemas/DecisionCounts"}
    assert schemas["BatchSummary"]["properties"]["decisions"]["additionalProperties"] == counts
    assert schemas["RegionStatsBody"]["properties"]["decisions"]["additionalProperties"] == counts
    assert set(schemas["DecisionCounts"]["required"]) == {"confident", "uncertain", "undetermined"}
