"""``vehicles``: generate data, validate, prepare, train, serve, predict, promote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Vehicle classification pipeline.")
console = Console()


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command("generate-data")
def generate_data(
    out: Annotated[Path, typer.Argument(help="Output folder (labels.csv + images/).")] = Path("data/synthetic"),
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 3000,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
) -> None:
    """Generate the deterministic synthetic vehicle dataset (vehicle_type and color)."""
    from tasks.synthetic import generate_dataset

    with _progress() as progress:
        bar = progress.add_task("Generating images", total=n)
        labels = generate_dataset(out, n=n, seed=seed, progress=lambda done: progress.update(bar, completed=done))
    console.print(f"Wrote {n} images and [bold]{labels}[/bold]")


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="CSV manifest, folder with labels.csv, or ImageFolder.")],
    min_per_class: Annotated[int, typer.Option(help="Fewest images allowed per class.")] = 5,
    attribute: Annotated[str, typer.Option(help="Label name for an ImageFolder dataset.")] = "label",
    labels: Annotated[
        list[str] | None,
        typer.Option("--labels", help="Allowed labels as ATTRIBUTE=a,b,c (repeatable); others are errors."),
    ] = None,
) -> None:
    """Check a dataset; print every problem as a table. Exit 1 on any problem."""
    from tasks.data import load_dataset
    from tasks.validation import ValidationConfig, validate_dataset

    try:
        dataset = load_dataset(path, attribute)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]Cannot load dataset:[/red] {exc}")
        raise typer.Exit(1) from exc
    config = ValidationConfig(min_per_class=min_per_class, labels=_parse_labels(labels or []))
    with _progress() as progress:
        bar = progress.add_task("Checking images", total=len(dataset.frame))
        result = validate_dataset(dataset, config, progress=lambda n: progress.advance(bar, n))
    if result.ok:
        console.print(f"[green]OK[/green]: {len(result.frame)} images, attributes {', '.join(dataset.attributes)}")
        return
    table = Table(title=f"{len(result.problems)} problems in {path}")
    for column in result.problems.columns:
        table.add_column(column, overflow="fold")
    for row in result.problems.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    console.print(table)
    raise typer.Exit(1)


def _parse_labels(specs: list[str]) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise typer.BadParameter(f"expected ATTRIBUTE=a,b,c, got {spec!r}", param_hint="--labels")
        parsed[name.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return parsed


@app.command()
def prepare(
    data: Annotated[str, typer.Argument(help="Dataset path.")] = "data/synthetic",
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
) -> None:
    """Validate, split and featurize a dataset (the data stage of training)."""
    from flows.prefect_api import prefect_api
    from flows.prepare import prepare_data
    from flows.settings import get_settings

    with prefect_api():
        prepared = prepare_data(data, seed=seed, settings=get_settings())
    console.print(f"Prepared {prepared.counts} (fingerprint {prepared.fingerprint[:16]}) -> {prepared.features}")


@app.command()
def train(
    data: Annotated[str, typer.Option(help="Dataset path, or 'synthetic' for the generated default.")] = "synthetic",
    candidate: Annotated[
        list[str] | None, typer.Option("--candidate", "-c", help="Candidate to train (repeatable); default all six.")
    ] = None,
    metric: Annotated[str, typer.Option(help="Selection metric: macro_f1, accuracy, log_loss, ece.")] = "macro_f1",
    min_improvement: Annotated[float, typer.Option(help="Margin over the champion needed to promote.")] = 0.005,
    seed: Annotated[int, typer.Option(help="Seed for split, search and models.")] = 0,
    time_budget: Annotated[float, typer.Option(help="Per-candidate search budget in seconds.")] = 120.0,
) -> None:
    """Run the training flow: prepare, train candidates, evaluate, register, promote."""
    from flows.prefect_api import prefect_api
    from flows.training import train_pipeline

    with prefect_api():
        summary = train_pipeline(
            data=data, candidates=candidate or None, metric=metric, min_improvement=min_improvement,
            seed=seed, time_budget_seconds=time_budget,
        )
    _print_summary(summary, metric)


def _print_summary(summary, metric: str) -> None:
    table = Table(title="Leaderboard (validation)")
    columns = ["rank", "candidate", f"val.{metric}", "val.accuracy", "val.log_loss", "fit_seconds", "predict_ms_per_image"]
    for column in columns:
        table.add_column(column)
    for row in summary.leaderboard:
        table.add_row(*(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console.print(table)
    for name, error in summary.failed.items():
        console.print(f"[red]failed[/red] {name}: {error}")
    tests = ", ".join(f"{k} {v:.4f}" for k, v in summary.test_metrics.items() if k.endswith("macro_f1"))
    console.print(f"Winner [bold]{summary.winner}[/bold] registered as version {summary.version}; test: {tests}")
    verdict = "[green]promoted to champion[/green]" if summary.promoted else "[yellow]kept as challenger[/yellow]"
    console.print(f"Decision: {verdict}: {summary.reason}")
