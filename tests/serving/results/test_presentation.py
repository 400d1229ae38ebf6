"""Predictions as clients read them: confidence, top-k, decisions, class counts and reports."""

from __future__ import annotations

import math

import pytest

from serving.results.presentation import class_counts, confidence, decision_counts, present, top_k
from serving.results.reports import Thresholds, build_report

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


def prediction(vehicle_type: dict[str, float], color: dict[str, float], color_decision: str = "confident") -> dict:
    """A model's record: both attributes confident unless ``color_decision`` says otherwise."""
    color_answer = {"label": max(color, key=color.get), "probabilities": color, "decision": color_decision}
    if color_decision != "confident":
        color_answer["reason"] = f"color is {color_decision} here"
    return {
        "vehicle_type": {
            "label": max(vehicle_type, key=vehicle_type.get),
            "probabilities": vehicle_type,
            "decision": "confident",
        },
        "color": color_answer,
    }


async def test_confidence_measures():
    assert confidence({"a": 1.0, "b": 0.0}) == {
        "max_probability": 1.0,
        "margin": 1.0,
        "entropy": 0.0,
        "normalized_entropy": 0.0,
    }
    even = confidence({"a": 0.5, "b": 0.5})
    assert even["margin"] == 0 and even["entropy"] == pytest.approx(math.log(2))
    assert even["normalized_entropy"] == pytest.approx(1.0)
    assert top_k({"a": 0.2, "b": 0.7, "c": 0.1}, 2) == [
        {"label": "b", "probability": 0.7},
        {"label": "a", "probability": 0.2},
    ]


async def test_class_counts_and_presentation():
    records = [
        prediction({"suv": 0.9, "van": 0.1}, {"red": 0.6, "blue": 0.4}),
        prediction({"suv": 0.2, "van": 0.8}, {"red": 0.7, "blue": 0.3}),
    ]
    assert class_counts(records) == {"vehicle_type": {"suv": 1, "van": 1}, "color": {"red": 2}}
    shown = present(records[0], 1)
    assert shown["color"]["top_k"] == [{"label": "red", "probability": 0.6}]
    assert shown["color"]["decision"] == "confident" and "reason" not in shown["color"]


async def test_decisions_are_shown_with_their_reason_and_counted_per_attribute():
    records = [
        prediction({"suv": 0.9, "van": 0.1}, {"red": 0.6, "blue": 0.4}),
        prediction({"suv": 0.9, "van": 0.1}, {"red": 0.6, "blue": 0.4}, "uncertain"),
        prediction({"suv": 0.9, "van": 0.1}, {"red": 0.6, "blue": 0.4}, "undetermined"),
        prediction({"suv": 0.9, "van": 0.1}, {"red": 0.6, "blue": 0.4}, "undetermined"),
    ]
    shown = present(records[2], 2)["color"]
    assert (shown["label"], shown["decision"], shown["reason"]) == ("red", "undetermined", "color is undetermined here")
    assert decision_counts(records) == {
        "vehicle_type": {"confident": 4, "uncertain": 0, "undetermined": 0},
        "color": {"confident": 1, "uncertain": 1, "undetermined": 2},
    }
    assert decision_counts([]) == {}


async def test_report_recommends_review_for_low_confidence_and_close_calls(small_model):
    record = prediction({"suv": 0.45, "van": 0.35, "bus": 0.2}, {"red": 0.55, "blue": 0.45})
    report = build_report("v1", record, small_model, Thresholds(min_probability=0.5, min_margin=0.15), 60)
    assert report["analysis"]["low_confidence"] == ["color", "vehicle_type"]
    lines = dict(zip(["vehicle_type", "color"], report["recommendations"], strict=True))
    assert "low confidence in 'suv'" in lines["vehicle_type"]
    assert "'red' (55%) and 'blue' (45%) are close" in lines["color"]
    sure = build_report(
        "v2", prediction({"suv": 0.95, "van": 0.05}, {"red": 0.9, "blue": 0.1}), small_model, Thresholds(), 60
    )
    assert sure["analysis"]["low_confidence"] == [] and "no manual review" in sure["recommendations"][0]
    assert sure["analysis"]["overall_confidence"] == 0.9
    assert sure["analysis"]["not_confident"] == []


async def test_report_recommends_review_for_answers_the_model_is_not_confident_in(small_model):
    sure = {"suv": 0.95, "van": 0.05}, {"red": 0.9, "blue": 0.1}
    uncertain = build_report("u", prediction(*sure, "uncertain"), small_model, Thresholds(), 60)
    undetermined = build_report("g", prediction(*sure, "undetermined"), small_model, Thresholds(), 60)
    for report in (uncertain, undetermined):
        assert report["analysis"]["low_confidence"] == [], "above the deployment's thresholds"
        assert report["analysis"]["not_confident"] == ["color"]
        assert report["predictions"]["color"]["reason"] == f"color is {report['predictions']['color']['decision']} here"
    assert uncertain["recommendations"] == [
        "color: 'red' (90%) is uncertain: color is uncertain here; review before relying on it."
    ]
    [line] = undetermined["recommendations"]
    assert line.startswith("color: undetermined (color is undetermined here); 'red' is only the most probable class")
