"""The promotion gate's pure parts: weighted scores, paired bootstrap, contract guard, verdicts, skip text."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.registry.gate import (
    Comparison,
    GatePolicy,
    contract_changes,
    decide,
    decision_markdown,
    paired_bootstrap,
    weighted_scores,
)
from tasks.registry.retrain import SkippedRun, unchanged_since
from tasks.training.evaluation import attribute_metrics, score

pytestmark = pytest.mark.unit

CLASSES = ["bus", "car", "van"]


def predictions(n: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities right on about ``accuracy`` of the images."""
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, size=n)
    right = rng.random(n) < accuracy
    guess = np.where(right, y, [CLASSES[(CLASSES.index(label) + 1) % 3] for label in y])
    proba = rng.dirichlet(np.ones(3), size=n) * 0.3
    proba[np.arange(n), [CLASSES.index(g) for g in guess]] += 0.7
    return y, proba


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy", "log_loss", "ece"])
def test_unit_weights_give_the_evaluation_metric(metric: str) -> None:
    y, proba = predictions(80, 0.7, seed=1)

    [value] = weighted_scores({"type": (CLASSES, proba)}, {"type": y}, np.ones((1, 80)), metric)

    expected = attribute_metrics(np.array(CLASSES), proba, y)[metric]
    assert value == pytest.approx(-expected if metric in ("log_loss", "ece") else expected, abs=1e-12)


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy", "log_loss", "ece"])
def test_the_gates_score_under_uniform_weights_is_the_mean_of_the_evaluation_metrics(metric: str) -> None:
    y_type, proba_type = predictions(60, 0.8, seed=5)
    y_colour, proba_colour = predictions(60, 0.5, seed=6)
    probabilities = {"type": (CLASSES, proba_type), "colour": (CLASSES, proba_colour)}

    [value] = weighted_scores(probabilities, {"type": y_type, "colour": y_colour}, np.full((1, 60), 3.0), metric)

    per_attribute = [
        attribute_metrics(np.array(CLASSES), proba, y)[metric]
        for y, proba in ((y_type, proba_type), (y_colour, proba_colour))
    ]
    assert value == pytest.approx(score({f"test.{metric}": np.mean(per_attribute)}, "test", metric), abs=1e-12)


def test_integer_weights_equal_scoring_the_resample() -> None:
    y, proba = predictions(50, 0.6, seed=2)
    draw = np.random.default_rng(0).integers(0, 50, size=50)
    weights = np.bincount(draw, minlength=50)[None, :].astype(float)

    [value] = weighted_scores({"type": (CLASSES, proba)}, {"type": y}, weights, "macro_f1")

    assert value == pytest.approx(attribute_metrics(np.array(CLASSES), proba[draw], y[draw])["macro_f1"], abs=1e-12)


def test_bootstrap_interval_brackets_a_clear_gain_above_zero() -> None:
    y, good = predictions(300, 0.9, seed=3)
    _, bad = predictions(300, 0.5, seed=3)

    c = paired_bootstrap({"type": (CLASSES, good)}, {"type": (CLASSES, bad)}, {"type": y}, "macro_f1", GatePolicy())

    assert c.images == 300 and c.gain > 0.2
    assert 0 < c.ci_low < c.gain < c.ci_high


def test_identical_models_have_a_zero_width_interval_at_zero() -> None:
    y, proba = predictions(100, 0.7, seed=4)

    c = paired_bootstrap({"t": (CLASSES, proba)}, {"t": (CLASSES, proba)}, {"t": y}, "accuracy", GatePolicy())

    assert (c.gain, c.ci_low, c.ci_high) == (0.0, 0.0, 0.0)


def comparison(gain: float, low: float, high: float, images: int = 100) -> Comparison:
    return Comparison(images, 0.8 + gain, 0.8, gain, low, high, 0.95)


@pytest.mark.parametrize(
    ("kwargs", "promote", "says"),
    [
        ({}, True, "no current champion"),
        ({"champion_version": "1", "changes": ["new attribute 'label'"]}, False, "contract change"),
        (
            {"champion_version": "1", "comparison": comparison(0.05, 0.01, 0.09, images=10), "images": 10},
            False,
            "only 10",
        ),
        ({"champion_version": "1", "images": 0}, False, "only 0"),
        ({"champion_version": "1", "comparison": comparison(0.002, 0.001, 0.004)}, False, "below the required"),
        ({"champion_version": "1", "comparison": comparison(0.03, -0.01, 0.07)}, False, "could be noise"),
        ({"champion_version": "1", "comparison": comparison(0.03, 0.01, 0.05)}, True, "beats champion v1 by +0.0300"),
    ],
)
def test_decide(kwargs: dict, promote: bool, says: str) -> None:
    decision = decide(0.9, GatePolicy(min_improvement=0.005, min_images=30), **kwargs)

    assert decision.promote is promote
    assert says in decision.reason


def test_tags_carry_count_and_interval() -> None:
    decision = decide(0.9, GatePolicy(), "3", comparison(0.03, 0.01, 0.05, images=120))

    tags = decision.tags()

    assert tags["gate.images"] == "120" and tags["gate.ci_low"] == "+0.010000" and tags["gate.ci_high"] == "+0.050000"
    assert tags["promotion.decision"] == "promoted" and tags["gate.champion_version"] == "3"
    assert "| 120 test images neither trained on |" in decision_markdown(decision, "4", "knn", "macro_f1", 0.9, {})


def test_contract_changes_name_attributes_and_labels() -> None:
    old = {"vehicle_type": ["bus", "car"], "color": ["red"]}

    assert contract_changes(old, old) == []
    assert contract_changes(old, {"label": ["bus", "car"]}) == [
        "attribute 'vehicle_type' is no longer predicted",
        "attribute 'color' is no longer predicted",
        "new attribute 'label'",
    ]
    assert contract_changes(old, {"vehicle_type": ["bus", "tram"], "color": ["red"]}) == [
        "vehicle_type: labels ['car'] are no longer returned",
        "vehicle_type: new labels ['tram']",
    ]


def test_unchanged_since_matches_fingerprint_and_featurizer() -> None:
    versions = [
        ("champion", "1", {"fingerprint": "a", "featurizer": "f1"}),
        ("challenger", "2", {"fingerprint": "b", "featurizer": "f1"}),
    ]

    assert unchanged_since(versions, "a", "f1")[:2] == ("champion", "1")
    assert unchanged_since(versions, "b", "f1")[:2] == ("challenger", "2")
    assert unchanged_since(versions, "a", "f2") is None
    assert unchanged_since(versions, "c", "f1") is None


def test_skip_message_names_the_version_and_the_drift_context() -> None:
    skip = SkippedRun(
        "4",
        "champion",
        "4",
        "/data/root",
        "abcdef0123456789",
        "126",
        trigger="drift",
        drift_regions=("eu-west", "us-east"),
    )

    assert skip.line == "no new data since champion v4, trained on /data/root (126 images, fingerprint abcdef012345)"
    text = skip.markdown()
    assert "started by: drift" in text and "label regions eu-west, us-east" in text

    rejected = SkippedRun("5", "challenger", "4", "/data/root", "abc", "126", promotion_reason="could be noise")
    assert "it was not promoted (could be noise); champion is v4" in rejected.line


def test_a_skip_since_the_champion_under_a_custom_alias_is_not_called_unpromoted() -> None:
    versions = [("prod", "4", {"fingerprint": "abc", "featurizer": "f1"})]
    alias, version, _ = unchanged_since(versions, "abc", "f1")

    skip = SkippedRun(version, alias, "4", "/data/root", "abc", "126", champion_alias="prod")

    assert skip.line == "no new data since prod v4, trained on /data/root (126 images, fingerprint abc)"
    rejected = SkippedRun("5", "challenger", "4", "/data/root", "abc", "126", "noise", champion_alias="prod")
    assert "it was not promoted (noise); champion is v4" in rejected.line
