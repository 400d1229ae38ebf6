"""Drift statistics on records, and the record format both sides share."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tasks.monitoring.drift import ALL, Thresholds, detect, records_frame
from vehicle_model.featurizer import EMBEDDING_DIM, FEATURE_DIM, colour_histogram
from vehicle_model.records import (
    PROJECTION_DIM,
    PROJECTION_VERSION,
    SUMMARY_DIM,
    decode,
    encode,
    prediction_record,
    project,
    summarise,
)

pytestmark = pytest.mark.unit

TYPES = ["bus", "sedan", "truck", "van"]


def _records(
    n: int, seed: int, region: str = "north", types=TYPES, confidence=(8, 2), shift: float = 0.0, dark: float = 0.0
) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "time": 0.0,
            "region": region,
            "model": "m",
            "version": "1",
            "projection": PROJECTION_VERSION,
            "predictions": {
                "vehicle_type": {"label": str(rng.choice(types)), "probability": float(rng.beta(*confidence))}
            },
            "features": list(rng.normal(shift, 1.0, PROJECTION_DIM)),
            "tone": list(rng.dirichlet([2, 3, 2])) + list(rng.dirichlet([2 + 20 * dark, 3, 2])),
        }
        for _ in range(n)
    ]


REFERENCE = records_frame(_records(400, seed=0, region="reference"))


def test_same_distribution_in_many_windows_raises_no_alarm():
    alarms = [
        detect(REFERENCE, records_frame(_records(60, seed=s)), Thresholds())[0]["north"].drift for s in range(1, 21)
    ]
    assert sum(alarms) == 0


@pytest.mark.parametrize(
    ("kind", "records", "expected"),
    [
        ("one class only", _records(60, seed=5, types=["bus"]), "label.vehicle_type"),
        ("unsure model", _records(60, seed=6, confidence=(2, 2)), "confidence.vehicle_type"),
        ("shifted embedding", _records(60, seed=7, shift=1.0), "embedding"),
        ("darker shots", _records(60, seed=8, dark=1.0), "tone"),
    ],
)
def test_each_kind_of_shift_is_named(kind, records, expected):
    results, _ = detect(REFERENCE, records_frame(records), Thresholds())
    assert results["north"].drift and results["north"].drifted == [expected], kind


def test_only_the_shifted_region_drifts_and_small_regions_are_left_out():
    current = records_frame(
        _records(80, seed=8) + _records(80, seed=9, region="south", types=["van"]) + _records(5, seed=10, region="west")
    )
    results, too_few = detect(REFERENCE, current, Thresholds(min_records=30))
    assert list(results) == [ALL, "north", "south"]
    assert not results["north"].drift and results["south"].drift
    assert too_few == {"west": 5}


def test_a_tiny_difference_in_a_huge_window_is_not_drift():
    # 5000 records with 57% instead of 50% buses: significant, but below the minimum effect.
    rng = np.random.default_rng(11)
    big = _records(5000, seed=12, types=["bus", "sedan"])
    for record in big:
        if rng.random() < 0.14:
            record["predictions"]["vehicle_type"]["label"] = "bus"
    reference = records_frame(_records(5000, seed=13, types=["bus", "sedan"]))
    check = detect(reference, records_frame(big), Thresholds())[0]["north"].checks[0]
    assert check.p_value < 1e-6 and check.score < 0.1 and not check.drift


def test_projection_is_fixed_and_records_round_trip():
    features = np.random.default_rng(0).normal(size=(3, FEATURE_DIM)).astype(np.float32)
    projected = project(features)
    assert projected.shape == (3, PROJECTION_DIM)
    np.testing.assert_allclose(projected, project(features.copy()))
    changed = features.copy()
    changed[:, EMBEDDING_DIM:] = 0  # the colour histogram is not part of the projection
    np.testing.assert_allclose(project(changed), projected)
    prediction = {"vehicle_type": {"label": "bus", "probabilities": {"bus": 0.9, "van": 0.1}}}
    summary = summarise(features)
    assert summary.shape == (3, SUMMARY_DIM)
    np.testing.assert_allclose(summary[:, :PROJECTION_DIM], projected, rtol=1e-6)
    record = prediction_record(prediction, summary[0], region="north", model="m", version="3", time=1.5)
    assert decode(encode(record)) == record
    assert record["predictions"] == {"vehicle_type": {"label": "bus", "probability": 0.9}}
    assert record["projection"] == PROJECTION_VERSION and len(record["features"]) == PROJECTION_DIM


def test_tone_is_the_saturation_and_value_profile_of_the_image_as_it_arrived():
    features = np.zeros((1, FEATURE_DIM), dtype=np.float32)
    # Every pixel most saturated and darkest; the featurizer's normalisation would brighten it.
    features[0, EMBEDDING_DIM:] = colour_histogram(Image.new("RGB", (16, 16), (60, 5, 5)))
    np.testing.assert_array_equal(summarise(features)[0, PROJECTION_DIM:], [0, 0, 1, 1, 0, 0])
