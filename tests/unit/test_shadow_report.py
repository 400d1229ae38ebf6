"""The shadow report counts agreement from the pairs, tests accuracy with exact McNemar, and recommends by it."""

from __future__ import annotations

import json

import pytest
from scipy.stats import binomtest

from feedback.shadow import KEEP, PROMOTE, UNDECIDED, Pair, Side, mcnemar_exact, report_markdown, shadow_report

pytestmark = pytest.mark.unit


def _pair(i: int, mine: str, theirs: str, *, champion: str = "1", challenger: str = "2", colour: bool = True) -> Pair:
    answers = {"vehicle_type": (mine, 0.7)}
    other = {"vehicle_type": (theirs, 0.8)}
    if colour:
        answers["color"], other["color"] = ("red", 0.9), ("red", 0.95)
    return Pair(
        f"req{i}",
        1000.0 + i,
        "north" if i % 2 else "south",
        Side(champion, 10.0 + i % 7, answers),
        Side(challenger, 0.2 + (i % 5) / 100, other),
    )


def test_agreement_and_disagreements_are_the_pairs_own_counts() -> None:
    pairs = [_pair(i, "car", "car") for i in range(70)]
    pairs += [_pair(i, "car", "truck") for i in range(70, 90)]
    pairs += [_pair(i, "bus", "car") for i in range(90, 100)]

    report = shadow_report(pairs, {})

    assert report["champion"] == "1" and report["challenger"] == "2" and report["pairs"] == 100
    assert report["agreement"] == {"vehicle_type": 0.70, "color": 1.0}
    low, high = report["attributes"]["vehicle_type"]["agreement_interval"]
    assert low < 0.70 < high
    disagreements = report["attributes"]["vehicle_type"]["disagreements"]
    assert [(d["champion"], d["challenger"], d["count"]) for d in disagreements] == [
        ("car", "truck", 20),
        ("bus", "car", 10),
    ]
    assert disagreements[0]["examples"] == ["req70", "req71", "req72"]
    assert report["attributes"]["color"]["confidence_shift"] == pytest.approx(0.05)
    assert report["latency_ms"]["champion"]["p50"] > report["latency_ms"]["challenger"]["p99"]
    assert report["labelled"] == 0
    assert report["recommendation"]["action"] == UNDECIDED
    markdown = report_markdown(report)
    assert "| vehicle_type | 0.700 [" in markdown and "champion `car`, challenger `truck` x20" in markdown


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 12) == pytest.approx(binomtest(12, 15, 0.5).pvalue)
    assert mcnemar_exact(12, 3) == pytest.approx(mcnemar_exact(3, 12))
    assert mcnemar_exact(5, 5) == 1.0


def _labelled_run(challenger_only: int, champion_only: int, concordant: int = 100) -> tuple[list[Pair], dict]:
    """Pairs whose labels make each version right or wrong as asked."""
    pairs, labels, i = [], {}, 0
    for mine, theirs, truth, times in (
        ("car", "truck", "truck", challenger_only),
        ("car", "truck", "car", champion_only),
        ("car", "car", "car", concordant),
    ):
        for _ in range(times):
            pairs.append(_pair(i, mine, theirs))
            labels[f"req{i}"] = {"vehicle_type": truth}
            i += 1
    return pairs, labels


def test_the_recommendation_follows_the_mcnemar_result() -> None:
    better, labels = _labelled_run(challenger_only=15, champion_only=2)
    report = shadow_report(better, labels)
    accuracy = report["attributes"]["vehicle_type"]["accuracy"]
    assert accuracy["labelled"] == 117 and report["labelled"] == 117
    assert accuracy["challenger_only"] == 15 and accuracy["champion_only"] == 2
    assert accuracy["p_value"] == pytest.approx(binomtest(15, 17, 0.5).pvalue) and accuracy["p_value"] < 0.05
    assert accuracy["challenger"] == pytest.approx(115 / 117)
    assert report["recommendation"]["action"] == PROMOTE

    worse, labels = _labelled_run(challenger_only=2, champion_only=15)
    assert shadow_report(worse, labels)["recommendation"]["action"] == KEEP

    even, labels = _labelled_run(challenger_only=6, champion_only=5)
    decided = shadow_report(even, labels)["recommendation"]
    assert decided["action"] == UNDECIDED and "no significant difference" in decided["reason"]


def test_too_few_pairs_is_not_evidence_even_when_significant() -> None:
    pairs, labels = _labelled_run(challenger_only=12, champion_only=0, concordant=5)
    report = shadow_report(pairs, labels, min_pairs=100)
    assert report["attributes"]["vehicle_type"]["accuracy"]["p_value"] < 0.05
    assert report["recommendation"]["action"] == UNDECIDED


def test_attributes_of_one_version_are_listed_not_compared_and_a_dropped_one_keeps_the_champion() -> None:
    pairs = [
        Pair(
            f"r{i}",
            float(i),
            "north",
            Side("1", 5.0, {"vehicle_type": ("car", 0.9)}),
            Side("2", 0.3, {"vehicle_type": ("car", 0.9), "make": ("ford", 0.5)}),
        )
        for i in range(5)
    ]
    report = shadow_report(pairs, {})
    assert report["only_challenger"] == ["make"] and "make" not in report["agreement"]
    assert report["recommendation"]["action"] == UNDECIDED

    dropped = [Pair(p.item_id, p.at, p.region, p.challenger, p.champion) for p in pairs]
    report = shadow_report(dropped, {})
    assert report["only_champion"] == ["make"]
    assert report["recommendation"]["action"] == KEEP and "make" in report["recommendation"]["reason"]


def test_only_the_latest_pair_of_versions_counts_and_pairs_round_trip() -> None:
    old = [_pair(i, "car", "truck", challenger="2") for i in range(10)]
    new = [_pair(i, "car", "car", challenger="3") for i in range(10, 15)]
    report = shadow_report(old + new, {})
    assert report["challenger"] == "3" and report["pairs"] == 5 and report["agreement"]["vehicle_type"] == 1.0
    assert Pair.from_json(new[0].to_json()) == new[0]
    assert json.loads(old[0].to_json())["agreement"] == {"vehicle_type": False, "color": True}
    assert shadow_report([], {})["recommendation"]["action"] == UNDECIDED
