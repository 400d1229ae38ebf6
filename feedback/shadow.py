"""Shadow pairs: the champion's and a challenger's answers to the same live image, and the
evidence they give together.

Serving records one ``Pair`` per mirrored image (``serving.shadow``); the report reads them back
with whatever labels have arrived for the same items (``feedback.store``), and says how often
the two agree, where they disagree, what each costs, and, on labelled pairs, which is right
more often.

Agreement intervals are Wilson intervals (``feedback.accuracy.wilson``). Accuracy is compared
with an exact McNemar test: on the pairs where exactly one version is right, the number the
challenger gets right is Binomial(n, 1/2) when the two are equally accurate (McNemar 1947; the
exact form avoids the chi-squared approximation's failure on the few discordant pairs a
shadow sees). It is a paired test, so it is valid on any labelled subset whose choice did not
depend on the challenger; every label is used (feedback and reviews alike), since the
sampling serving applies depends on the champion's answer only.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scipy.stats import binomtest

from feedback.accuracy import wilson

PROMOTE = "promote"
KEEP = "keep champion"
UNDECIDED = "not enough evidence"
ALPHA = 0.05  # a McNemar p-value below this is evidence
MIN_PAIRS = 100  # fewer pairs say too little about agreement to act on
EXAMPLES = 3  # example item ids per disagreement
TOP_DISAGREEMENTS = 5
PAIR_FIELD = "pair"  # the stream entry's field holding ``Pair.to_json()``


def shadow_key(prefix: str) -> str:
    """The capped Redis stream every replica appends its pairs to."""
    return f"{prefix}:shadow"


@dataclass(frozen=True)
class Side:
    """One version's answer to a mirrored image.

    Attributes:
        version: the registered version that answered.
        ms: its inference time for this image (decode and backbone included when it paid them).
        answers: attribute -> (label, confidence of that label).
    """

    version: str
    ms: float
    answers: dict[str, tuple[str, float]]


@dataclass(frozen=True)
class Pair:
    """The champion's and the challenger's answers to one image.

    Attributes:
        item_id: the prediction's id (``request_id``, or ``request_id:index`` in a batch), the
            one labels are given for.
        at: when it was answered (epoch seconds).
        region: the request's region.
        champion, challenger: each version's answer.
    """

    item_id: str
    at: float
    region: str
    champion: Side
    challenger: Side

    @property
    def agreement(self) -> dict[str, bool]:
        """Attribute -> whether both versions gave the same label (attributes both answer)."""
        theirs = self.challenger.answers
        return {a: label == theirs[a][0] for a, (label, _) in self.champion.answers.items() if a in theirs}

    def to_json(self) -> str:
        # Built by hand: ``dataclasses.asdict`` deep-copies every answer, several times the cost.
        sides = {
            name: {"version": side.version, "ms": side.ms, "answers": side.answers}
            for name, side in (("champion", self.champion), ("challenger", self.challenger))
        }
        return json.dumps(
            {"item_id": self.item_id, "at": self.at, "region": self.region, **sides, "agreement": self.agreement},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Pair:
        data = json.loads(raw)
        sides = {
            name: Side(
                str(data[name]["version"]),
                float(data[name]["ms"]),
                {a: (str(label), float(conf)) for a, (label, conf) in data[name]["answers"].items()},
            )
            for name in ("champion", "challenger")
        }
        return cls(str(data["item_id"]), float(data["at"]), str(data["region"]), **sides)


def answers_of(prediction: Mapping[str, Mapping]) -> dict[str, tuple[str, float]]:
    """Attribute -> (label, its probability) of one served prediction record."""
    return {
        attribute: (str(answer["label"]), float(answer["probabilities"][answer["label"]]))
        for attribute, answer in prediction.items()
    }


def mcnemar_exact(champion_only: int, challenger_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = champion_only + challenger_only
    if n == 0:
        return 1.0
    return float(binomtest(challenger_only, n, 0.5).pvalue)


@dataclass
class _Compared:
    """Running counts of one compared attribute."""

    agree: int = 0
    shift: float = 0.0
    disagreements: Counter = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    labelled: int = 0
    champion_right: int = 0
    challenger_right: int = 0
    champion_only: int = 0
    challenger_only: int = 0


def shadow_report(
    pairs: Iterable[Pair],
    labels: Mapping[str, Mapping[str, str]],
    *,
    alpha: float = ALPHA,
    min_pairs: int = MIN_PAIRS,
) -> dict:
    """The comparison of the challenger with the champion over ``pairs``.

    Only pairs of the latest (champion, challenger) versions count: after a promotion or a
    new challenger, older pairs compare other models.

    Args:
        pairs: mirrored pairs, oldest first.
        labels: item id -> attribute -> the label a client or reviewer gave.
        alpha: the McNemar level that counts as evidence.
        min_pairs: fewer pairs than this is not enough evidence whatever the tests say.

    Returns:
        A JSON-able dict; its top level holds ``champion``, ``challenger``, ``pairs``,
        ``agreement`` (attribute -> rate), ``labelled`` and ``recommendation``
        (``{"action": ..., "reason": ...}``).
    """
    pairs = list(pairs)
    if not pairs:
        return _empty()
    latest = (pairs[-1].champion.version, pairs[-1].challenger.version)
    pairs = [p for p in pairs if (p.champion.version, p.challenger.version) == latest]
    champion_attributes = list(pairs[-1].champion.answers)
    challenger_attributes = list(pairs[-1].challenger.answers)
    compared = [a for a in champion_attributes if a in challenger_attributes]
    counts = {attribute: _Compared() for attribute in compared}
    labelled_items = 0
    for pair in pairs:
        truth = labels.get(pair.item_id, {})
        labelled_items += any(a in truth for a in compared)
        for attribute, count in counts.items():
            _count(count, pair, attribute, truth.get(attribute))
    n = len(pairs)
    per_attribute = {attribute: _attribute_block(count, n) for attribute, count in counts.items()}
    report = {
        "champion": latest[0],
        "challenger": latest[1],
        "pairs": n,
        "agreement": {attribute: block["agreement"] for attribute, block in per_attribute.items()},
        "labelled": labelled_items,
        "attributes": per_attribute,
        "only_champion": [a for a in champion_attributes if a not in challenger_attributes],
        "only_challenger": [a for a in challenger_attributes if a not in champion_attributes],
        "latency_ms": {
            "champion": _percentiles([p.champion.ms for p in pairs]),
            "challenger": _percentiles([p.challenger.ms for p in pairs]),
        },
        "first_at": pairs[0].at,
        "last_at": pairs[-1].at,
        "alpha": alpha,
    }
    report["recommendation"] = recommend(report, alpha, min_pairs)
    return report


def recommend(report: Mapping, alpha: float = ALPHA, min_pairs: int = MIN_PAIRS) -> dict[str, str]:
    """``promote`` when the challenger is significantly more accurate on at least one attribute
    and significantly less on none; ``keep champion`` when it is significantly less accurate on
    one, or would drop an attribute clients receive; otherwise ``not enough evidence``."""
    if report["pairs"] == 0:
        return {"action": UNDECIDED, "reason": "no mirrored pairs yet"}
    if report["champion"] == report["challenger"]:
        return {"action": UNDECIDED, "reason": f"the shadow is the champion itself (version {report['champion']})"}
    if report["only_champion"]:
        missing = ", ".join(report["only_champion"])
        return {"action": KEEP, "reason": f"the challenger does not answer {missing}, which clients receive today"}
    tested = {a: block["accuracy"] for a, block in report["attributes"].items() if block["accuracy"]["labelled"]}
    worse = {a: t for a, t in tested.items() if t["p_value"] < alpha and t["challenger_only"] < t["champion_only"]}
    better = {a: t for a, t in tested.items() if t["p_value"] < alpha and t["challenger_only"] > t["champion_only"]}
    if worse:
        return {"action": KEEP, "reason": "challenger less accurate on " + _tests_line(worse)}
    if report["pairs"] < min_pairs:
        return {"action": UNDECIDED, "reason": f"{report['pairs']} pairs; at least {min_pairs} are needed"}
    if better:
        return {"action": PROMOTE, "reason": "challenger more accurate on " + _tests_line(better)}
    if not tested:
        return {
            "action": UNDECIDED,
            "reason": "no labelled pairs yet: send feedback or review items to compare accuracy",
        }
    return {"action": UNDECIDED, "reason": "no significant difference in accuracy: " + _tests_line(tested)}


def report_markdown(report: Mapping) -> str:
    """The report as markdown, for a Prefect artifact."""
    action = report["recommendation"]
    title = (
        f"# Shadow: challenger v{report['challenger']} against champion v{report['champion']}"
        if report["pairs"]
        else "# Shadow: no mirrored pairs"
    )
    lines = [
        title,
        "",
        f"**{action['action']}**: {action['reason']}",
        "",
        f"{report['pairs']} mirrored pairs, {report['labelled']} with labels.",
    ]
    if report["pairs"]:
        lines += [
            "",
            "| attribute | agreement [95%] | confidence shift | labelled "
            "| champion acc. | challenger acc. | McNemar p |",
            "|---|---|---|---|---|---|---|",
        ]
        for attribute, block in report["attributes"].items():
            acc = block["accuracy"]
            low, high = block["agreement_interval"]
            accuracies = (
                f"{acc['champion']:.3f} | {acc['challenger']:.3f} | {acc['p_value']:.3g}"
                if acc["labelled"]
                else "- | - | -"
            )
            lines.append(
                f"| {attribute} | {block['agreement']:.3f} [{low:.3f}, {high:.3f}] | "
                f"{block['confidence_shift']:+.3f} | {acc['labelled']} | {accuracies} |"
            )
        latency = report["latency_ms"]
        lines += [
            "",
            f"Latency ms (p50 / p99): champion {latency['champion']['p50']:.2f} / {latency['champion']['p99']:.2f}, "
            f"challenger {latency['challenger']['p50']:.2f} / {latency['challenger']['p99']:.2f}.",
        ]
        for attribute, block in report["attributes"].items():
            for d in block["disagreements"]:
                lines.append(
                    f"- {attribute}: champion `{d['champion']}`, challenger `{d['challenger']}` "
                    f"x{d['count']} (e.g. {', '.join(d['examples'])})"
                )
    for key, who in (("only_champion", "champion"), ("only_challenger", "challenger")):
        if report.get(key):
            lines.append(f"\nOnly the {who} answers: {', '.join(report[key])} (not compared).")
    return "\n".join(lines) + "\n"


def _count(count: _Compared, pair: Pair, attribute: str, truth: str | None) -> None:
    (mine, my_confidence), (theirs, their_confidence) = (
        pair.champion.answers[attribute],
        pair.challenger.answers[attribute],
    )
    count.shift += their_confidence - my_confidence
    if mine == theirs:
        count.agree += 1
    else:
        count.disagreements[(mine, theirs)] += 1
        examples = count.examples.setdefault((mine, theirs), [])
        if len(examples) < EXAMPLES:
            examples.append(pair.item_id)
    if truth is None:
        return
    count.labelled += 1
    champion_right, challenger_right = mine == truth, theirs == truth
    count.champion_right += champion_right
    count.challenger_right += challenger_right
    count.champion_only += champion_right and not challenger_right
    count.challenger_only += challenger_right and not champion_right


def _attribute_block(count: _Compared, n: int) -> dict:
    labelled = count.labelled
    return {
        "agreement": count.agree / n,
        "agreement_interval": list(wilson(count.agree, n)),
        "confidence_shift": count.shift / n,
        "disagreements": [
            {"champion": mine, "challenger": theirs, "count": times, "examples": count.examples[(mine, theirs)]}
            for (mine, theirs), times in count.disagreements.most_common(TOP_DISAGREEMENTS)
        ],
        "accuracy": {
            "labelled": labelled,
            "champion": count.champion_right / labelled if labelled else None,
            "challenger": count.challenger_right / labelled if labelled else None,
            "champion_only": count.champion_only,
            "challenger_only": count.challenger_only,
            "p_value": mcnemar_exact(count.champion_only, count.challenger_only),
        },
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": _quantile(ordered, 0.5), "p99": _quantile(ordered, 0.99)}


def _quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _tests_line(tests: Mapping[str, Mapping]) -> str:
    return "; ".join(
        f"{a} ({t['challenger']:.3f} vs {t['champion']:.3f} on {t['labelled']} labelled, McNemar p={t['p_value']:.3g})"
        for a, t in tests.items()
    )


def _empty() -> dict:
    report = {
        "champion": None,
        "challenger": None,
        "pairs": 0,
        "agreement": {},
        "labelled": 0,
        "attributes": {},
        "only_champion": [],
        "only_challenger": [],
        "latency_ms": {},
    }
    report["recommendation"] = recommend(report)
    return report
