"""``vehicles shadow``: the challenger against the champion on the live traffic serving mirrored.

It reads what the hourly ``shadow-report`` flow reads (the Redis stream, the label store) and
prints the same report, but records nothing, so it needs no Prefect server and no MLflow run.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

console = Console()
COLUMNS = (
    "attribute",
    "agreement",
    "95%\ninterval",
    "conf.\nshift",
    "labelled",
    "champion\nacc.",
    "challenger\nacc.",
    "McNemar\np",
)


def shadow(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Compare the challenger with the champion on mirrored traffic: agreement per attribute,
    accuracy on labelled pairs with an exact McNemar test, and whether to promote."""
    from flows.monitor_settings import get_monitor_settings

    report, notes = get_monitor_settings().shadow_report()
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(report))
        return
    print_report(report)


def print_report(report: dict) -> None:
    action = report["recommendation"]
    if not report["pairs"]:
        console.print(f"No shadow pairs: {action['reason']}", soft_wrap=True)
        return
    rows = [_row(attribute, block) for attribute, block in report["attributes"].items()]
    # The box's blank rule is the only space between columns: eight columns fit in 80, values uncut.
    table = Table(
        title=f"Challenger v{report['challenger']} against champion v{report['champion']}: "
        f"{report['pairs']} pairs, {report['labelled']} labelled",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=0,
    )
    for i, header in enumerate(COLUMNS):
        table.add_column(
            header, justify="left" if i == 0 else "right", min_width=max((len(row[i]) for row in rows), default=0)
        )
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for attribute, block in report["attributes"].items():
        for d in block["disagreements"]:
            console.print(
                f"  {attribute}: champion {d['champion']}, challenger {d['challenger']} x{d['count']} "
                f"(e.g. {', '.join(d['examples'])})",
                soft_wrap=True,
                markup=False,
            )
    latency = report["latency_ms"]
    console.print(
        f"Latency ms p50/p99: champion {latency['champion']['p50']:.2f}/{latency['champion']['p99']:.2f}, "
        f"challenger {latency['challenger']['p50']:.2f}/{latency['challenger']['p99']:.2f}"
    )
    for key, who in (("only_champion", "champion"), ("only_challenger", "challenger")):
        if report[key]:
            console.print(f"Only the {who} answers {', '.join(report[key])} (not compared).")
    console.print(f"Recommendation: [bold]{action['action']}[/bold]: {action['reason']}", soft_wrap=True)


def _row(attribute: str, block: dict) -> list[str]:
    accuracy = block["accuracy"]
    low, high = block["agreement_interval"]
    tested = (
        [f"{accuracy['champion']:.3f}", f"{accuracy['challenger']:.3f}", f"{accuracy['p_value']:.2g}"]
        if accuracy["labelled"]
        else ["-", "-", "-"]
    )
    return [
        attribute,
        f"{block['agreement']:.3f}",
        f"{low:.3f}-{high:.3f}",
        f"{block['confidence_shift']:+.3f}",
        str(accuracy["labelled"]),
        *tested,
    ]
