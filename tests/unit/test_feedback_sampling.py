"""Which predictions are kept for review: the uniform sample stays unbiased, the targeted reasons
take uncertain answers and drifted regions at their shares, and the caps bound it all."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.items import KeptItem, margin
from feedback.sampling import SamplingPolicy, is_uncertain

pytestmark = pytest.mark.unit

CONFIDENT = {"vehicle_type": {"label": "bus", "probabilities": {"bus": 0.9, "car": 0.1}, "decision": "confident"}}
UNCERTAIN = {"vehicle_type": {"label": "bus", "probabilities": {"bus": 0.5, "car": 0.5}, "decision": "uncertain"}}
# Evenly spaced draws: every share below is met exactly (up to one draw), with no randomness.
DRAWS = (np.arange(100_000) + 0.5) / 100_000


def share(policy: SamplingPolicy, prediction: dict, drifted: bool, reason: str, among: str | None = None) -> float:
    """The fraction of draws whose reasons include ``reason`` (of those including ``among``, if given)."""
    chosen = [policy.choose(prediction, drifted, float(d)) for d in DRAWS]
    pool = [r for r in chosen if among is None or among in r]
    return sum(reason in r for r in pool) / len(pool)


def test_the_uniform_share_does_not_depend_on_the_prediction_or_the_drift() -> None:
    policy = SamplingPolicy(uniform_share=0.02, uncertain_share=0.25, drifted_share=0.5)

    for prediction in (CONFIDENT, UNCERTAIN):
        for drifted in (False, True):
            assert share(policy, prediction, drifted, "uniform") == pytest.approx(0.02, abs=1e-5)


def test_each_targeted_reason_keeps_its_share_inside_and_outside_the_uniform_sample() -> None:
    policy = SamplingPolicy(uniform_share=0.1, uncertain_share=0.25, drifted_share=0.5)

    assert share(policy, UNCERTAIN, True, "uncertain") == pytest.approx(0.25, abs=1e-4)
    assert share(policy, UNCERTAIN, True, "uncertain", among="uniform") == pytest.approx(0.25, abs=1e-3)
    assert share(policy, UNCERTAIN, True, "drifted") == pytest.approx(0.5, abs=1e-4)
    assert share(policy, CONFIDENT, True, "drifted", among="uniform") == pytest.approx(0.5, abs=1e-3)
    assert share(policy, CONFIDENT, True, "uncertain") == 0
    assert share(policy, UNCERTAIN, False, "drifted") == 0


def test_a_confident_answer_from_a_quiet_region_is_kept_only_by_the_uniform_draw() -> None:
    policy = SamplingPolicy(uniform_share=0.02)

    assert policy.choose(CONFIDENT, False, 0.01) == ("uniform",)
    assert policy.choose(CONFIDENT, False, 0.02) == ()
    # In the uniform sample, the targeted reasons are decided on draw / uniform_share (0.05 here, 0.5 next).
    assert policy.choose(UNCERTAIN, True, 0.001) == ("uniform", "uncertain", "drifted")
    assert policy.choose(UNCERTAIN, True, 0.01) == ("uniform",)
    assert policy.choose(UNCERTAIN, True, 0.03) == ("uncertain", "drifted")
    assert policy.choose(UNCERTAIN, True, 0.99) == ()


def test_the_decision_says_whether_an_attribute_is_uncertain_when_there_is_one() -> None:
    close = {"bus": 0.5, "car": 0.5}
    assert is_uncertain({"type": {"probabilities": close, "decision": "uncertain"}})
    # The decision wins over the margin; a grey frame's colour (undetermined) cannot be labelled by a person either.
    assert not is_uncertain({"type": {"probabilities": close, "decision": "confident"}})
    assert not is_uncertain({"color": {"probabilities": close, "decision": "undetermined"}})
    two = {
        "type": {"probabilities": {"bus": 0.9, "car": 0.1}, "decision": "confident"},
        "color": {"probabilities": close, "decision": "uncertain"},
    }
    assert is_uncertain(two)


def test_without_a_decision_the_margin_decides_against_the_versions_threshold_or_the_default() -> None:
    narrow = {"type": {"probabilities": {"bus": 0.55, "car": 0.4, "van": 0.05}}}  # margin 0.15
    wide = {"type": {"probabilities": {"bus": 0.6, "car": 0.3, "van": 0.1}}}  # margin 0.3

    assert is_uncertain(narrow) and not is_uncertain(wide)
    assert is_uncertain(wide, {"type": 0.35})
    assert not is_uncertain(narrow, {"type": 0.1})
    assert is_uncertain(narrow, {"color": 0.5})  # another attribute's threshold leaves the default


def test_the_caps_admit_an_item_only_below_both() -> None:
    policy = SamplingPolicy(max_per_hour=3, max_total=10)

    assert policy.admits(2, 9)
    assert not policy.admits(3, 0)
    assert not policy.admits(0, 10)
    assert not SamplingPolicy(max_per_hour=0).admits(0, 0)


@pytest.mark.parametrize(
    ("field", "value"), [("uniform_share", 1.5), ("uncertain_share", -0.1), ("drifted_share", 2), ("max_total", -1)]
)
def test_an_impossible_policy_is_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SamplingPolicy(**{field: value})


def test_a_draw_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="draw"):
        SamplingPolicy().choose(CONFIDENT, False, 1.0)


def test_a_kept_item_holds_the_answer_its_margins_and_the_classes_most_probable_first() -> None:
    prediction = {
        "vehicle_type": {
            "label": "car",
            "probabilities": {"bus": 0.2, "car": 0.7, "van": 0.1},
            "decision": "confident",
        },
        "color": {"label": "red", "probabilities": {"red": 0.45, "blue": 0.4, "white": 0.15}},
    }

    item = KeptItem.from_prediction(
        "r1:0", prediction, time=5, region="n", client="c", model="m", version=3, reasons=("uncertain",), image_sha="0"
    )

    assert item.labels == {"vehicle_type": "car", "color": "red"}
    assert item.classes == {"vehicle_type": ["car", "bus", "van"], "color": ["red", "blue", "white"]}
    assert item.margin == {"vehicle_type": pytest.approx(0.5), "color": pytest.approx(0.05)}
    assert item.min_margin == pytest.approx(0.05)
    assert item.predictions["vehicle_type"]["decision"] == "confident" and "decision" not in item.predictions["color"]
    assert item.predictions["color"]["probability"] == 0.45 and item.version == "3" and not item.uniform
    assert margin({"only": 1.0}) == 1.0
