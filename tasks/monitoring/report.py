"""The monitoring run in words: a one-screen markdown summary and a self-contained HTML report."""

from __future__ import annotations

import html
from collections.abc import Iterable

import pandas as pd

from tasks.monitoring.drift import ALL, records_frame
from tasks.monitoring.summary import DriftSummary, TrackedRun

DRIFT_COLUMNS = ("region", "records", "drift", "drifted on", "scores")
ONLINE_COLUMNS = ("region", "attribute", "labelled", "accuracy", "95% interval")


def drift_rows(summary: DriftSummary, yes: str = "yes") -> list[tuple[str, ...]]:
    """The drift table both the markdown artifact and ``vehicles monitor`` show.

    Args:
        summary: the run.
        yes: how a drifting region's ``drift`` cell reads (bold in markdown, red in a terminal).

    Returns:
        One row of ``DRIFT_COLUMNS`` per examined region, ``all`` first.
    """
    return [
        (
            region,
            str(result["records"]),
            yes if result["drift"] else "no",
            ", ".join(result["drifted"]) or "-",
            ", ".join(f"{name} {value:.2f}" for name, value in result["scores"].items()),
        )
        for region, result in summary.regions.items()
    ]


def too_few_line(summary: DriftSummary) -> str | None:
    """The regions left out for too few records, with their counts; None when there are none."""
    if not summary.too_few:
        return None
    return "Too few records to judge: " + ", ".join(f"{r} ({n})" for r, n in summary.too_few.items())


def online_rows(summary: DriftSummary, dropped: str = "dropped") -> list[tuple[str, ...]]:
    """The online accuracy table: one row per region (``all`` first) and attribute.

    Args:
        summary: the run.
        dropped: appended to the accuracy of a region that dropped below the test score.
    """
    drops = {(d["region"], d["attribute"]) for d in summary.accuracy_dropped}
    regions = sorted(summary.online_accuracy, key=lambda region: (region != ALL, region))
    return [
        (
            region,
            attribute,
            str(numbers["labelled"]),
            f"{numbers['accuracy']:.3f}" + (f" {dropped}" if (region, attribute) in drops else ""),
            f"{numbers['low']:.3f} to {numbers['high']:.3f}",
        )
        for region in regions
        for attribute, numbers in summary.online_accuracy[region].items()
    ]


def online_lines(summary: DriftSummary) -> list[str]:
    """What the online accuracy rests on, where it dropped, and which regions' labels are ready."""
    if not summary.online_accuracy:
        return ["No online accuracy: no labels for this version yet."]
    lines = [f"Online accuracy counts {summary.online_basis}."]
    for drop in summary.accuracy_dropped:
        lines.append(
            f"{drop['region']}: {drop['attribute']} accuracy {drop['accuracy']:.3f} (at most {drop['high']:.3f}) "
            f"is below the test accuracy {drop['test_accuracy']:.3f}."
        )
    if summary.labels_ready:
        ready = ", ".join(f"{region} ({n})" for region, n in summary.labels_ready.items())
        lines.append(f"Reviewed labels ready to harvest: {ready}.")
    return lines


def markdown_report(summary: DriftSummary, run: TrackedRun | None = None) -> str:
    """Which regions drifted, on what, and how strongly, in one table, linked to the MLflow run."""
    t = summary.thresholds
    verdict = f"drift in **{', '.join(summary.drifted_regions)}**" if summary.drift else "no drift"
    lines = [
        f"# {summary.model} v{summary.version}: {verdict}",
        "",
        f"{summary.window_start} to {summary.window_end}: {summary.records} records read, "
        f"{summary.compared} from v{summary.version} compared with its validation reference. "
        f"Thresholds: p < {t['p_value']}, score >= {t['min_effect']}, feature share >= {t['feature_share']}, "
        f">= {t['min_records']} records per region.",
        "",
        _markdown_row(DRIFT_COLUMNS),
        _markdown_row("---:" if column == "records" else "---" for column in DRIFT_COLUMNS),
        *(_markdown_row(row) for row in drift_rows(summary, yes="**yes**")),
    ]
    too_few = too_few_line(summary)
    if too_few:
        lines += ["", too_few]
    lines += ["", "## Online accuracy", ""]
    if summary.online_accuracy:
        lines += [
            _markdown_row(ONLINE_COLUMNS),
            _markdown_row("---:" if column == "labelled" else "---" for column in ONLINE_COLUMNS),
            *(_markdown_row(row) for row in online_rows(summary, dropped="**dropped**")),
            "",
        ]
    lines.append("\n\n".join(online_lines(summary)))
    if run:
        lines += ["", f"MLflow run [`{run.run_id}`]({run.url}) (experiment `{run.experiment}`) has the HTML report."]
    return "\n".join(lines) + "\n"


def html_report(summary: DriftSummary, reference: list[dict], records: list[dict]) -> str:
    """Summary, every check per region, and label distributions next to the reference's."""
    current = records_frame([r for r in records if str(r["version"]) == summary.version])
    ref = records_frame(reference)
    checks = pd.DataFrame(
        [
            {
                "region": region,
                "check": name,
                "score": score,
                "p_value": result["p_values"][name],
                "drift": name in result["drifted"],
            }
            for region, result in summary.regions.items()
            for name, score in result["scores"].items()
        ]
    )
    parts = [
        f"<h1>Drift report: {html.escape(summary.model)} v{html.escape(summary.version)}</h1>",
        f"<p>{html.escape(summary.window_start)} to {html.escape(summary.window_end)}; "
        f"{summary.compared} records compared; thresholds {html.escape(str(summary.thresholds))}.</p>",
        "<h2>Checks</h2>",
        checks.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        if len(checks)
        else "<p>No region had enough records.</p>",
    ]
    for column in sorted(c for c in ref.columns if c.startswith("label.")):
        parts += [
            f"<h2>{html.escape(column)}: share of predictions</h2>",
            _label_shares(ref, current, column, summary).to_html(float_format=lambda v: f"{v:.3f}"),
        ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title></head><body>"
        + "".join(parts)
        + "</body></html>"
    )


def _label_shares(ref: pd.DataFrame, current: pd.DataFrame, column: str, summary: DriftSummary) -> pd.DataFrame:
    shares = {"reference": ref[column].value_counts(normalize=True)}
    for region in summary.regions:
        frame = current if region == ALL else current[current["region"] == region]
        if column in frame:
            shares[region] = frame[column].value_counts(normalize=True)
    return pd.DataFrame(shares).fillna(0.0)


def _markdown_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"
