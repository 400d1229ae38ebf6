"""``vehicles``: generate data, validate, ingest, prepare, train, serve, predict, promote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cli.labels import labels_app
from cli.shadow import shadow
from tasks.defaults import AUGMENT_COPIES, MIN_IMPROVEMENT, TIME_BUDGET_SECONDS

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Vehicle classification pipeline.")
app.add_typer(labels_app, name="labels", help="Review labels: status, Label Studio export/import, harvest, expire.")
app.command("shadow")(shadow)
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
    from tasks.data.synthetic import generate_dataset

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
    from tasks.data.dataset import load_dataset
    from tasks.data.validation import ValidationConfig, validate_dataset

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
    _print_problems(result.problems, f"{len(result.problems)} problems in {path}")
    raise typer.Exit(1)


def _print_problems(problems, title: str) -> None:
    table = Table(title=title)
    for column in problems.columns:
        table.add_column(column, overflow="fold")
    for row in problems.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    console.print(table)


@app.command()
def ingest(
    source: Annotated[
        Path, typer.Argument(help="The new batch: CSV manifest, folder with labels.csv, or ImageFolder.")
    ],
    into: Annotated[
        Path | None, typer.Option(help="Training data root (a folder of batches); default PIPELINE_TRAINING_DATA.")
    ] = None,
    min_per_class: Annotated[int, typer.Option(help="Fewest images per class in the root with this batch.")] = 5,
    attribute: Annotated[
        str, typer.Option(help="Label name for an ImageFolder batch (the root's when it has one).")
    ] = "label",
) -> None:
    """Add a labelled batch to the training data, checked like training data and against the root's
    images. On any problem: print them, change nothing, exit 1."""
    from cli.prefect_api import prefect_api
    from flows.ingest import ingest_batch
    from tasks.data.ingest import BatchRejected

    try:
        with prefect_api():
            added = ingest_batch(
                str(source), str(into) if into else None, min_per_class=min_per_class, attribute=attribute
            )
    except BatchRejected as exc:
        _print_problems(exc.problems, f"{len(exc.problems)} problems in {source}")
        console.print(f"[red]Batch refused[/red]: {exc}")
        raise typer.Exit(1) from exc
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        console.print(f"[red]Cannot ingest:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"Added {added.images} images as {added.path}; the root now holds {added.root_images} images")


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
    from cli.prefect_api import prefect_api
    from flows.prepare import prepare_data
    from flows.settings import get_settings

    with prefect_api():
        prepared = prepare_data(data, seed=seed, settings=get_settings())
    console.print(f"Prepared {prepared.counts} (fingerprint {prepared.fingerprint[:16]}) -> {prepared.features}")


@app.command()
def train(
    data: Annotated[
        str | None, typer.Option(help="Dataset path or batch root, or 'synthetic'; default PIPELINE_TRAINING_DATA.")
    ] = None,
    candidate: Annotated[
        list[str] | None, typer.Option("--candidate", "-c", help="Candidate to train (repeatable); default all six.")
    ] = None,
    metric: Annotated[str, typer.Option(help="Selection metric: macro_f1, accuracy, log_loss, ece.")] = "macro_f1",
    min_improvement: Annotated[float, typer.Option(help="Gain over the champion needed to promote.")] = MIN_IMPROVEMENT,
    seed: Annotated[int, typer.Option(help="Seed for split, search, models and the gate's bootstrap.")] = 0,
    time_budget: Annotated[
        float, typer.Option(help="Per-candidate budget in seconds: search and refit end within it plus one fit.")
    ] = TIME_BUDGET_SECONDS,
    augment_copies: Annotated[
        int, typer.Option(help="Shifted copies of each training image (0: none).")
    ] = AUGMENT_COPIES,
    force: Annotated[bool, typer.Option("--force", help="Train even if nothing changed since the champion.")] = False,
    vote: Annotated[
        bool, typer.Option("--vote/--no-vote", help="Also score the soft vote of the best candidates as one more.")
    ] = True,
) -> None:
    """Run the training flow: prepare, train candidates, evaluate, gate, register, promote.

    When the data and featurizer are unchanged since the champion it trains nothing and says so.
    """
    from cli.prefect_api import prefect_api
    from flows.training import train_pipeline
    from tasks.data.validation import DataValidationError
    from tasks.registry.retrain import SkippedRun

    parameters = dict(
        data=data,
        candidates=candidate or None,
        metric=metric,
        min_improvement=min_improvement,
        seed=seed,
        time_budget_seconds=time_budget,
        augment_copies=augment_copies,
        force=force,
        vote=vote,
    )
    _check_flow_parameters(train_pipeline, parameters)
    try:
        with prefect_api():
            summary = train_pipeline(**parameters)
    except (DataValidationError, FileNotFoundError, ValueError) as exc:
        # Input problems: the flow run already holds the details (logs, artifacts); no traceback here.
        console.print(f"[red]Training stopped:[/red] {exc}")
        raise typer.Exit(1) from exc
    if isinstance(summary, SkippedRun):
        console.print(f"Nothing to train: {summary.line}. Use --force to retrain anyway.", soft_wrap=True)
        return
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
    console.print(_leaderboard_table(summary.leaderboard, metric))
    for name, error in summary.failed.items():
        console.print(f"[red]failed[/red] {name}: {error}")
    tests = ", ".join(f"{k} {v:.4f}" for k, v in summary.test_metrics.items() if k.endswith("macro_f1"))
    console.print(f"Winner [bold]{summary.winner}[/bold] registered as version {summary.version}; test: {tests}")
    verdict = "[green]promoted to champion[/green]" if summary.promoted else "[yellow]kept as challenger[/yellow]"
    console.print(f"Decision: {verdict}: {summary.reason}")


def _leaderboard_table(leaderboard: list[dict], metric: str) -> Table:
    """Candidates best first, in 80 columns: names and numbers are never cut, only headers fold."""
    # Column -> (header, decimals). The title says the scores are validation scores, which
    # frees the "val." of every header; three decimals tell candidates apart.
    columns = {
        f"val.{metric}": (metric, 3),
        "val.accuracy": ("accuracy", 3),
        "val.log_loss": ("log_loss", 3),
        "fit_seconds": ("fit\nseconds", 1),
        "predict_ms_per_image": ("predict\nms per\nimage", 2),
    }
    cells = {
        column: [f"{row[column]:.{decimals}f}" for row in leaderboard] for column, (_, decimals) in columns.items()
    }
    names = [str(row["candidate"]) for row in leaderboard]
    # No vertical rules and no outer padding: with them, seven columns do not fit in 80.
    table = Table(title="Leaderboard (validation)", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("candidate", no_wrap=True, min_width=max(map(len, names), default=0))
    for column, (header, _) in columns.items():
        table.add_column(header, justify="right", overflow="fold", min_width=max(map(len, cells[column]), default=0))
    for i, row in enumerate(leaderboard):
        table.add_row(str(row["rank"]), names[i], *(cells[column][i] for column in columns))
    cut = [
        f"{row['candidate']} stopped early ({row['stopped_early']})" for row in leaderboard if row.get("stopped_early")
    ]
    if cut:
        table.caption = "Time budget: " + "; ".join(cut)
    return table


@app.command()
def promote(
    version: Annotated[str | None, typer.Option("--version", help="Model version to make champion.")] = None,
    from_shadow: Annotated[
        bool,
        typer.Option("--from-shadow", help="Promote the shadowed challenger if the shadow report recommends it."),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Confirm a change of what clients receive, or promote against the shadow report."),
    ] = False,
) -> None:
    """Make a registered version the champion (the old champion becomes 'previous').

    With --from-shadow, the version is the challenger the shadow report (`vehicles shadow`)
    compared, promoted only when the report recommends it; --yes promotes it against the
    recommendation. Either way, if its attributes or labels differ from the champion's, print
    what changes for clients and promote only with --yes. Takes the registry lock the training
    flow takes.
    """
    if (version is None) == (not from_shadow):
        raise typer.BadParameter("give either --version N or --from-shadow", param_hint="--version / --from-shadow")
    if from_shadow:
        _promote_from_shadow(yes)
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from cli.prefect_api import prefect_api
    from flows.settings import get_settings
    from tasks.registry.lock import registry_lock
    from tasks.registry.versions import promote as promote_version
    from tasks.tracking import use_tracking_store

    settings = get_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    client = MlflowClient()
    try:
        # Checked before taking the lock, so a mistake fails at once; checked again under it.
        champion, changes = _contract_check(client, settings, version)
        _confirm(changes, champion, version, yes)
        with prefect_api(), registry_lock(settings.model_name):
            now, changes = _contract_check(client, settings, version)
            if now != champion:  # the champion moved meanwhile
                _confirm(changes, now, version, yes)
            old = promote_version(client, settings.model_name, version, settings.model_alias)
    except MlflowException as exc:
        console.print(f"[red]Cannot promote:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    if old == version:
        console.print(f"{settings.model_name}: v{version} is already the champion; nothing changed")
        return
    console.print(f"{settings.model_name}: champion is now v{version} (previous: {'v' + old if old else 'none'})")


def _promote_from_shadow(yes: bool) -> None:
    """Promotes the version the shadow report compared, on its evidence (or on --yes), and records
    the decision with that evidence: the report as an MLflow run, its numbers as version tags."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from cli.prefect_api import prefect_api
    from flows.monitor_settings import get_monitor_settings
    from tasks.monitoring.shadow import recommends_promotion
    from tasks.monitoring.shadow_steps import announce_promotion, promote_on_evidence, stale_evidence, track_shadow
    from tasks.registry.lock import registry_lock
    from tasks.tracking import local_artifact_root, use_tracking_store

    settings = get_monitor_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    client = MlflowClient()
    report = _evidence_or_exit(settings, yes)
    version = report["challenger"]
    try:
        # As with --version: checked at once, then again under the lock.
        refusal = stale_evidence(client, settings.model_name, settings.model_alias, settings.shadow_alias, report)
        if refusal is not None:
            console.print(f"[red]Cannot promote from the shadow:[/red] {escape(refusal)}", soft_wrap=True)
            raise typer.Exit(1)
        champion, changes = _contract_check(client, settings, version)
        _confirm(changes, champion, version, yes)
        with prefect_api(), registry_lock(settings.model_name):
            now, changes = _contract_check(client, settings, version)
            if now != champion:
                _confirm(changes, now, version, yes)
            artifact_root = local_artifact_root(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
            tags = {"model": settings.model_name, "trigger": "vehicles promote --from-shadow"}
            run = track_shadow(report, tags, settings.experiment, artifact_root, settings.mlflow_ui_url)
            promotion = promote_on_evidence(
                client,
                settings.model_name,
                settings.model_alias,
                settings.shadow_alias,
                report,
                run.run_id,
                by="vehicles promote --from-shadow",
                override=not recommends_promotion(report),  # only --yes gets here without the recommendation
                contract_checked=True,
            )
            if promotion.promoted:
                announce_promotion(settings.model_name, promotion, run.run_id)
    except MlflowException as exc:
        console.print(f"[red]Cannot promote:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    if not promotion.promoted:
        console.print(f"[red]Cannot promote from the shadow:[/red] {escape(promotion.reason)}", soft_wrap=True)
        raise typer.Exit(1)
    previous = f"v{promotion.previous}" if promotion.previous else "none"
    console.print(f"{settings.model_name}: champion is now v{version} (previous: {previous})")
    console.print(f"Why: {escape(promotion.reason)}; evidence: {run.url}", soft_wrap=True)


def _evidence_or_exit(settings, yes: bool) -> dict:
    """The shadow report; stops with its reason unless it recommends promotion or ``--yes`` names
    a version to promote anyway."""
    from tasks.monitoring.shadow import recommends_promotion

    report, notes = settings.shadow_report()
    for note in notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    if recommends_promotion(report) or (yes and report["challenger"] is not None):
        return report
    recommendation = report["recommendation"]
    console.print(
        f"[yellow]Not promoted:[/yellow] the shadow report says {recommendation['action']}: "
        f"{escape(recommendation['reason'])}",
        soft_wrap=True,
    )
    if report["challenger"] is not None:
        console.print(f"Run again with --yes to promote v{report['challenger']} anyway.")
    raise typer.Exit(1)


def _contract_check(client, settings, version: str) -> tuple[str | None, list[str]]:
    """The champion's version and what promoting ``version`` over it changes for clients."""
    from tasks.registry.gate import contract_changes
    from tasks.registry.versions import version_contract, version_for_alias

    client.get_model_version(settings.model_name, version)  # a clear error for an unknown version
    champion = version_for_alias(client, settings.model_name, settings.model_alias)
    if champion is None or str(champion.version) == version:
        return (None if champion is None else str(champion.version)), []
    old, new = (version_contract(settings.model_name, v) for v in (str(champion.version), version))
    return str(champion.version), contract_changes(old, new)


def _confirm(changes: list[str], champion: str | None, version: str, yes: bool) -> None:
    """Prints a contract change; stops unless ``--yes`` was given."""
    if not changes:
        return
    console.print(f"Promoting v{version} changes what clients receive (champion is v{champion}):")
    for change in changes:
        console.print(f"  - {change}", soft_wrap=True)
    if not yes:
        console.print("[yellow]Not promoted.[/yellow] Run again with --yes to promote anyway.")
        raise typer.Exit(1)


@app.command()
def rollback() -> None:
    """Make the 'previous' version champion again (champion and previous swap), under the registry lock."""
    from mlflow import MlflowClient

    from cli.prefect_api import prefect_api
    from flows.settings import get_settings
    from tasks.registry.lock import registry_lock
    from tasks.registry.versions import rollback as rollback_versions
    from tasks.registry.versions import rollback_pair
    from tasks.tracking import use_tracking_store

    settings = get_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    try:
        rollback_pair(
            MlflowClient(), settings.model_name, settings.model_alias
        )  # fail at once; rechecked under the lock
        with prefect_api(), registry_lock(settings.model_name):
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
    """Classify image files with a registered model (no server needed).

    Prints one line per image: its path, then JSON with each attribute's label, decision
    (confident, uncertain or undetermined) and, unless confident, the reason.
    """
    import json

    import mlflow

    from flows.settings import get_settings
    from tasks.tracking import use_tracking_store
    from vehicle_model.images import ImageDecodeError

    settings = get_settings()
    use_tracking_store(settings.mlflow_tracking_uri)
    ref = version or f"@{settings.model_alias}"
    uri = (
        f"models:/{settings.model_name}/{version}"
        if version
        else f"models:/{settings.model_name}@{settings.model_alias}"
    )
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
        answers = {attribute: _answer(value) for attribute, value in record.items()}
        # One unwrapped plain line per image, so the JSON after the path stays parseable.
        console.print(f"{path}: {json.dumps(answers)}", soft_wrap=True, markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


def _answer(prediction: dict) -> dict:
    """One attribute as ``predict`` prints it: the label, the decision and, unless confident, why."""
    return {key: prediction[key] for key in ("label", "decision", "reason") if key in prediction}


@app.command()
def monitor(
    window_minutes: Annotated[
        float | None, typer.Option(min=0.1, help="Read the last N minutes; default: everything since the last run.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Run the drift monitor once: compare recent predictions per region with the champion's reference."""
    import json

    from mlflow.exceptions import MlflowException
    from redis.exceptions import RedisError

    from cli.prefect_api import prefect_api
    from flows.monitoring import monitor_drift

    try:
        with prefect_api():
            summary = monitor_drift(window_minutes=window_minutes)
    except (LookupError, ValueError, RedisError, MlflowException) as exc:
        console.print(f"[red]Monitoring stopped:[/red] {getattr(exc, 'message', None) or exc}")
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
        return
    _print_drift(summary)


def _print_drift(summary) -> None:
    from tasks.monitoring.report import (
        DRIFT_COLUMNS,
        ONLINE_COLUMNS,
        drift_rows,
        online_lines,
        online_rows,
        too_few_line,
    )

    table = Table(
        title=f"{summary.model} v{summary.version}: {summary.compared} records, "
        f"{summary.window_start} to {summary.window_end}"
    )
    for column in DRIFT_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in drift_rows(summary, yes="[red]yes[/red]"):
        table.add_row(*row)
    console.print(table)
    too_few = too_few_line(summary)
    if too_few:
        console.print(too_few)
    verdict = (
        f"[red]drift in {', '.join(summary.drifted_regions)}[/red]" if summary.drift else "[green]no drift[/green]"
    )
    console.print(f"Verdict: {verdict} (MLflow run {summary.mlflow_run_id})")
    if summary.online_accuracy:
        online = Table(title=f"Online accuracy of v{summary.version}")
        for column in ONLINE_COLUMNS:
            online.add_column(column, overflow="fold")
        for row in online_rows(summary, dropped="[red]dropped[/red]"):
            online.add_row(*row)
        console.print(online)
    for line in online_lines(summary):
        console.print(line, soft_wrap=True)


@app.command()
def deploy(
    work_pool: Annotated[str, typer.Option(help="Process work pool (created if missing).")] = "vehicles-process",
) -> None:
    """Register the deployments of prefect.yaml ('train', 'retrain-nightly', 'monitor-drift-hourly',
    'shadow-report-hourly', 'harvest-labels-daily') and their automations on a Prefect server (PREFECT_API_URL)."""
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
    console.print(
        f"Deployed train, retrain-nightly (retrains on drift too), monitor-drift-hourly, shadow-report-hourly and "
        f"harvest-labels-daily (harvests when labels are ready too) ({', '.join(ids)}) on pool '{work_pool}'."
    )
    console.print(f"Start a worker: [bold]prefect worker start --pool {work_pool}[/bold]")


@app.command("serve-flows")
def serve_flows() -> None:
    """Serve every deployment from this process (one machine, no work pool)."""
    from flows.deploy import serve_flows as run

    run()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default SERVING_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SERVING_PORT or 8000).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="uvicorn worker processes (default SERVING_WORKERS or 1).")
    ] = None,
) -> None:
    """Serve the champion model over HTTP (docs at /docs, metrics at /metrics)."""
    from serving.__main__ import run
    from serving.settings import get_settings

    overrides = {"serving_host": host, "serving_port": port, "serving_workers": workers}
    run(get_settings().model_copy(update={k: v for k, v in overrides.items() if v is not None}))
