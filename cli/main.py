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
    from tasks.prepare_steps import DataValidationError

    parameters = dict(
        data=data, candidates=candidate or None, metric=metric, min_improvement=min_improvement,
        seed=seed, time_budget_seconds=time_budget,
    )
    _check_flow_parameters(train_pipeline, parameters)
    try:
        with prefect_api():
            summary = train_pipeline(**parameters)
    except (DataValidationError, FileNotFoundError, ValueError) as exc:
        # Input problems: the flow run already holds the details (logs, artifacts); no traceback here.
        console.print(f"[red]Training stopped:[/red] {exc}")
        raise typer.Exit(1) from exc
    _print_summary(summary, metric)


def _check_flow_parameters(flow, parameters: dict) -> None:
    """The flow's own parameter rules, checked before any server starts; one line when broken."""
    import logging

    from prefect.exceptions import ParameterTypeError

    prefect_flows = logging.getLogger("prefect.flows")  # it would also log pydantic's raw errors
    was_disabled, prefect_flows.disabled = prefect_flows.disabled, True
    try:
        flow.validate_parameters(parameters)
    except ParameterTypeError as exc:
        reasons = "; ".join(line.strip(" -") for line in str(exc).splitlines()[1:])
        console.print(f"[red]Invalid training parameters:[/red] {reasons}", soft_wrap=True)
        raise typer.Exit(2) from exc
    finally:
        prefect_flows.disabled = was_disabled


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


@app.command()
def promote(version: Annotated[str, typer.Option("--version", help="Model version to make champion.")]) -> None:
    """Make a registered version the champion (the old champion becomes 'previous')."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from flows.settings import get_settings
    from tasks.registry import promote as promote_version
    from tasks.tracking import use_tracking_store

    settings = get_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    try:
        old = promote_version(MlflowClient(), settings.model_name, version, settings.model_alias)
    except MlflowException as exc:
        console.print(f"[red]Cannot promote:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    console.print(f"{settings.model_name}: champion is now v{version} (previous: {'v' + old if old else 'none'})")


@app.command()
def rollback() -> None:
    """Make the 'previous' version champion again (champion and previous swap)."""
    from mlflow import MlflowClient

    from flows.settings import get_settings
    from tasks.registry import rollback as rollback_versions
    from tasks.tracking import use_tracking_store

    settings = get_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    try:
        champion, previous = rollback_versions(MlflowClient(), settings.model_name, settings.model_alias)
    except LookupError as exc:
        console.print(f"[red]Cannot roll back:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{settings.model_name}: champion is now v{champion} (previous: v{previous})")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.", exists=True, dir_okay=False)],
    version: Annotated[str | None, typer.Option(help="Model version; default the champion alias.")] = None,
) -> None:
    """Classify image files with a registered model (no server needed)."""
    import json

    import mlflow

    from flows.settings import get_settings
    from tasks.tracking import use_tracking_store
    from vehicle_model.images import ImageDecodeError

    settings = get_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    ref = version or f"@{settings.model_alias}"
    uri = f"models:/{settings.model_name}/{version}" if version else f"models:/{settings.model_name}@{settings.model_alias}"
    try:
        classifier = mlflow.pyfunc.load_model(uri).unwrap_python_model().classifier
    except mlflow.exceptions.MlflowException as exc:
        console.print(f"[red]No model at {settings.model_name} {ref}:[/red] {exc.message}. Run `vehicles train` first.")
        raise typer.Exit(1) from exc
    failed = False
    for path in images:
        try:
            record = classifier.predict_bytes([path.read_bytes()])[0]
        except ImageDecodeError as exc:
            console.print(f"[red]{path}[/red]: {exc}")
            failed = True
            continue
        labels = {attribute: value["label"] for attribute, value in record.items()}
        console.print(f"{path}: {json.dumps(labels)}")
    if failed:
        raise typer.Exit(1)


@app.command()
def deploy(
    work_pool: Annotated[str, typer.Option(help="Process work pool (created if missing).")] = "vehicles-process",
) -> None:
    """Register the 'train' and 'retrain-nightly' deployments on a Prefect server (PREFECT_API_URL)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import get_current_settings

    from flows.deploy import deploy_to_pool

    if not get_current_settings().api.url:
        console.print("[red]PREFECT_API_URL is not set[/red]: start `prefect server start` and export its API URL.")
        raise typer.Exit(1)
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=work_pool, type="process"))
        except ObjectAlreadyExists:
            pass
    ids = deploy_to_pool(work_pool)
    console.print(f"Deployed train and retrain-nightly ({', '.join(ids)}) on pool '{work_pool}'.")
    console.print(f"Start a worker: [bold]prefect worker start --pool {work_pool}[/bold]")


@app.command("serve-flows")
def serve_flows() -> None:
    """Serve 'train' and 'retrain-nightly' from this process (one machine, no work pool)."""
    from flows.deploy import serve_flows as run

    run()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default SERVING_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SERVING_PORT or 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes (default SERVING_WORKERS or 1).")] = None,
) -> None:
    """Serve the champion model over HTTP (docs at /docs, metrics at /metrics)."""
    from serving.__main__ import run
    from serving.settings import get_settings

    overrides = {"serving_host": host, "serving_port": port, "serving_workers": workers}
    run(get_settings().model_copy(update={k: v for k, v in overrides.items() if v is not None}))
