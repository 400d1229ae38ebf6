"""Online accuracy: Wilson and Newcombe intervals against published values, the unbiased basis,
and when a region's accuracy counts as dropped."""

from __future__ import annotations

from dataclasses import replace

import pytest

from feedback.accuracy import BASIS, accuracy_dropped, difference_interval, online_accuracy, region_summary, wilson
from feedback.items import LabelRow

pytestmark = pytest.mark.unit


def row(item_id: str, label: str, predicted: str, *, source: str = "feedback", uniform: bool = False, **kw) -> LabelRow:
    fields = {"region": "north", "version": "3"} | kw
    return LabelRow(
        item_id=item_id,
        labels={"vehicle_type": label},
        source=source,
        labelled_by="acme",
        labelled_at=1.0,
        predicted={"vehicle_type": predicted},
        predicted_at=0.0,
        client="acme",
        model="vehicle-classifier",
        kept=True,
        uniform=uniform,
        **fields,
    )


@pytest.mark.parametrize(
    ("correct", "n", "expected"),
    [
        (81, 263, (0.2553, 0.3662)),  # Newcombe (1998), Statistics in Medicine 17:857, table I
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (15, 148, (0.0624, 0.1605)),
    ],
)
def test_wilson_matches_the_published_intervals(correct: int, n: int, expected: tuple[float, float]) -> None:
    assert wilson(correct, n) == pytest.approx(expected, abs=5e-5)


def test_wilson_with_no_trials_says_nothing_and_refuses_impossible_counts() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="correct"):
        wilson(5, 4)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [  # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10
        ((56, 70), (48, 80), (0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.1705, 0.8090)),
        ((5, 56), (0, 29), (-0.0381, 0.1926)),
        ((0, 10), (0, 20), (-0.1611, 0.2775)),
        ((10, 10), (0, 20), (0.6791, 1.0)),
    ],
)
def test_the_difference_interval_matches_newcombes_table(a, b, expected) -> None:
    assert difference_interval(a, b) == pytest.approx(expected, abs=5e-5)


def test_the_difference_interval_needs_trials_on_both_sides() -> None:
    with pytest.raises(ValueError, match="trial"):
        difference_interval((0, 0), (1, 2))


def test_only_feedback_and_uniform_reviews_are_scored_and_the_result_says_so() -> None:
    rows = [
        row("f1", "car", "car"),
        row("f2", "bus", "car"),
        row("u1", "car", "car", source="review", uniform=True),
        row("t1", "bus", "car", source="review"),  # kept for uncertainty: seeks errors, left out
        row("t2", "bus", "car", source="review"),
    ]

    (key, entry), *_ = online_accuracy(rows).items()

    assert key == ("3", "north", "vehicle_type")
    assert entry["labelled"] == 3 and entry["correct"] == 2 and entry["accuracy"] == pytest.approx(2 / 3)
    assert (entry["feedback"], entry["uniform_reviews"], entry["excluded"]) == (2, 1, 2)
    assert (entry["low"], entry["high"]) == pytest.approx(wilson(2, 3)) and entry["basis"] == BASIS


def test_results_are_kept_apart_by_version_region_and_attribute() -> None:
    both = replace(
        row("x", "car", "car"),
        labels={"vehicle_type": "car", "color": "red"},
        predicted={"vehicle_type": "car", "color": "blue"},
    )
    rows = [both, row("n", "bus", "car", region="night"), row("v", "car", "car", version="4")]
    rows.append(row("t", "car", "car", source="review", region="east"))  # only targeted: no entry
    partial = replace(row("p", "car", "car"), labels={"wheels": "4"})  # an attribute the model does not predict

    online = online_accuracy([*rows, partial])

    assert {k: v["accuracy"] for k, v in online.items()} == {
        ("3", "night", "vehicle_type"): 0.0,
        ("3", "north", "color"): 0.0,
        ("3", "north", "vehicle_type"): 1.0,
        ("4", "north", "vehicle_type"): 1.0,
    }
    summary = region_summary(online, "3")
    assert summary["north"]["accuracy"] == {"color": 0.0, "vehicle_type": 1.0}
    assert summary["north"]["labelled"] == 1 and set(summary) == {"north", "night"}


def test_a_drop_is_significant_only_with_enough_labels_and_an_upper_bound_below_the_test_score() -> None:
    rows = [row(f"n{i}", "car" if i < 8 else "bus", "car", region="night") for i in range(20)]  # 8/20
    rows += [row(f"d{i}", "car" if i < 17 else "bus", "car") for i in range(20)]  # 17/20
    rows += [row(f"s{i}", "bus", "car", region="few") for i in range(5)]  # 0/5: too few to call
    online = online_accuracy(rows)

    drops = accuracy_dropped(online, {"3": {"vehicle_type": 0.9}, "7": {"vehicle_type": 0.99}})

    assert [(d.region, d.labelled, d.test_accuracy) for d in drops] == [("night", 20, 0.9)]
    assert drops[0].high == pytest.approx(wilson(8, 20)[1]) and drops[0].high < 0.9
    assert accuracy_dropped(online, {"3": {"vehicle_type": 0.9}}, min_labelled=5)[0].region == "few"
    assert accuracy_dropped(online, {"2": {"vehicle_type": 0.99}}) == []
