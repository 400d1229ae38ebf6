"""``vehicles labels``: the labels of the learning loop: status, Label Studio export and import,
harvest into the training data, and the retention window.

Every command reads the store serving writes (``LABELS_DATABASE_URL``, ``REVIEW_IMAGES_URL``);
none creates it, so a mistyped URL is reported instead of answered with an empty new database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from feedback.store import LabelStore

labels_app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()
FORMATS = ("label-studio",)
IMAGE_URL = "http://127.0.0.1:8000/api/labels/{item_id}/image"  # the review API of `vehicles serve`
REVIEWER = "label-studio"

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _open_store() -> tuple[LabelStore | None, str]:
    """The configured label store (None when it does not exist yet) and its URL."""
    from flows.settings import get_settings
    from tasks.data.harvest_steps import existing_store

    url = get_settings().labels_database_url
    try:
        return existing_store(url), url
    except ValueError as exc:  # not a SQLite or PostgreSQL URL
        console.print(f"[red]Cannot open the label store:[/red] {exc}")
        raise typer.Exit(1) from exc


def _no_store(url: str) -> str:
    return f"no label store at {url} (LABELS_DATABASE_URL): serving creates it when it keeps its first image"


@labels_app.command()
def status(as_json: JsonOption = False) -> None:
    """Per region: images kept, waiting for review, labelled, harvested; online accuracy with its interval."""
    from feedback.accuracy import BASIS, online_accuracy

    store, url = _open_store()
    if store is None:
        if as_json:
            typer.echo(json.dumps({"database": url, "regions": {}, "online_accuracy": [], "basis": BASIS}))
        else:
            console.print(f"No labels yet: {_no_store(url)}.")
        return
    try:
        counts, rows, harvestable = store.counts(), store.labelled_rows(), store.harvestable()
    finally:
        store.close()
    for region in counts:
        counts[region]["harvestable"] = sum(row.region == region for row in harvestable)
    online = [
        {"version": version, "region": region, "attribute": attribute, **numbers}
        for (version, region, attribute), numbers in online_accuracy(rows).items()
    ]
    if as_json:
        typer.echo(json.dumps({"database": url, "regions": counts, "online_accuracy": online, "basis": BASIS}))
        return
    _print_status(counts, online, BASIS)


def _print_status(counts: dict[str, dict[str, int]], online: list[dict], basis: str) -> None:
    columns = ("kept", "queued", "rejected", "labelled", "harvestable", "harvested")
    table = Table(title="Labels per region")
    table.add_column("region")
    for column in columns:
        table.add_column(column, justify="right")
    for region, numbers in counts.items():
        table.add_row(region, *(str(numbers[column]) for column in columns))
    console.print(table)
    if not online:
        console.print("No online accuracy yet: no client feedback or reviews of the uniform sample.")
        return
    accuracy = Table(title="Online accuracy")
    for column in ("version", "region", "attribute", "labelled", "accuracy", "95% interval"):
        accuracy.add_column(column, justify="right" if column in ("labelled", "accuracy") else "left")
    for entry in online:
        accuracy.add_row(
            f"v{entry['version']}",
            entry["region"],
            entry["attribute"],
            str(entry["labelled"]),
            f"{entry['accuracy']:.3f}",
            f"{entry['low']:.3f} to {entry['high']:.3f}",
        )
    console.print(accuracy)
    console.print(f"Counted: {basis}.", soft_wrap=True)


@labels_app.command()
def export(
    format: Annotated[str, typer.Option("--format", help="Only label-studio.")] = "label-studio",
    out: Annotated[
        Path | None, typer.Option(help="Write the tasks here, and the labeling config beside it (.xml).")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Only this region's items.")] = None,
    image_url: Annotated[
        str, typer.Option(help="Where Label Studio fetches each image: a template with {item_id} and/or {sha}.")
    ] = IMAGE_URL,
    limit: Annotated[int, typer.Option(min=1, help="Most items exported (the queue's order).")] = 1000,
) -> None:
    """Export the review queue as Label Studio tasks with the model's answers pre-filled.

    Without --out the tasks go to stdout and the labeling config to stderr.
    """
    from feedback.labelstudio import export_tasks, labeling_config

    if format not in FORMATS:
        raise typer.BadParameter(
            f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", param_hint="--format"
        )
    store, url = _open_store()
    if store is None:
        console.print(f"[red]Nothing to export:[/red] {_no_store(url)}")
        raise typer.Exit(1)
    try:
        items = store.queue(region=region, limit=limit)
    finally:
        store.close()
    try:
        tasks = export_tasks(items, image_url)
    except (KeyError, IndexError, ValueError) as exc:  # a template naming other fields than item_id and sha
        console.print(f"[red]Bad --image-url:[/red] {image_url!r} may name only {{item_id}} and {{sha}} ({exc})")
        raise typer.Exit(2) from exc
    config = labeling_config(_classes(items))
    if out is None:
        typer.echo(json.dumps(tasks, indent=2))
        typer.echo(config, err=True)
        return
    out.write_text(json.dumps(tasks, indent=2), encoding="utf-8")
    out.with_suffix(".xml").write_text(config, encoding="utf-8")
    console.print(f"Exported {len(tasks)} tasks to {out}; labeling config: {out.with_suffix('.xml')}")


def _classes(items) -> dict[str, list[str]]:
    """attribute -> every class any exported item's model knows, sorted: one config fits all tasks."""
    classes: dict[str, set[str]] = {}
    for item in items:
        for attribute, names in item.classes.items():
            classes.setdefault(attribute, set()).update(names)
    return {attribute: sorted(names) for attribute, names in classes.items()}


@labels_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A Label Studio JSON export of tasks from `labels export`.")],
    replace: Annotated[bool, typer.Option("--replace", help="Replace different labels given before.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Import Label Studio annotations as reviews.

    Imports every answer it can; exit 1 if any was refused (unknown or expired item, a class
    the model does not know, different labels given before).
    """
    from feedback.labelstudio import read_annotations

    try:
        annotations = read_annotations(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        console.print(f"[red]Cannot read {file}:[/red] {exc}")
        raise typer.Exit(1) from exc
    store, url = _open_store()
    if store is None:
        console.print(f"[red]Cannot import:[/red] {_no_store(url)}")
        raise typer.Exit(1)
    try:
        outcomes, refused = _review_all(store, annotations, replace)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"outcomes": outcomes, "refused": refused}))
    else:
        _print_import(file, outcomes, refused)
    if refused:
        raise typer.Exit(1)


def _review_all(
    store: LabelStore, annotations: dict[str, dict[str, str]], replace: bool
) -> tuple[dict[str, int], dict[str, str]]:
    """Each annotation as a correction; outcome counts, and item_id -> why it was refused."""
    outcomes: dict[str, int] = {}
    refused: dict[str, str] = {}
    for item_id, labels in annotations.items():
        try:
            outcome = store.review(item_id, "correct", labels, reviewer=REVIEWER, replace=replace)
        except KeyError:
            refused[item_id] = "unknown or expired item (kept images leave after REVIEW_RETENTION_DAYS)"
            continue
        except ValueError as exc:
            refused[item_id] = str(exc)
            continue
        if outcome == "conflict":
            refused[item_id] = "different labels were given before; --replace to replace them"
        else:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes, refused


def _print_import(file: Path, outcomes: dict[str, int], refused: dict[str, str]) -> None:
    done = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())) or "nothing"
    console.print(f"Imported from {file}: {done}; {len(refused)} refused")
    if refused:
        table = Table(title="Refused")
        table.add_column("item", overflow="fold")
        table.add_column("why", overflow="fold")
        for item_id, why in refused.items():
            table.add_row(item_id, why)
        console.print(table)


@labels_app.command()
def harvest(
    into: Annotated[
        Path | None, typer.Option(help="Training data root (a folder of batches); default PIPELINE_TRAINING_DATA.")
    ] = None,
    min_labels: Annotated[int, typer.Option(min=1, help="Fewest reviewed labels worth a batch.")] = 1,
    min_per_class: Annotated[int, typer.Option(min=1, help="Fewest images per class in the root with it.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Add the reviewed labels to the training data as one batch, checked by ingest.

    Runs the harvest-labels flow. On any problem: print them, add and mark nothing, exit 1.
    """
    from dataclasses import asdict

    from cli.prefect_api import prefect_api
    from flows.harvest import harvest_labels
    from tasks.data.ingest import BatchRejected

    try:
        with prefect_api():
            done = harvest_labels(str(into) if into else None, min_labels=min_labels, min_per_class=min_per_class)
    except BatchRejected as exc:
        table = Table(title=f"{len(exc.problems)} problems in the harvested labels")
        for column in exc.problems.columns:
            table.add_column(column, overflow="fold")
        for row in exc.problems.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        console.print(table)
        console.print(f"[red]Harvest refused[/red]: {exc}")
        raise typer.Exit(1) from exc
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        console.print(f"[red]Cannot harvest:[/red] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps({**asdict(done), "labels": done.labels}))
        return
    if done.batch is None:
        console.print(f"Nothing harvested: {done.note}")
    else:
        regions = ", ".join(f"{region} {n}" for region, n in done.regions.items())
        console.print(
            f"Harvested {done.labels} labels ({done.images} images) as {done.batch} into {done.root}: {regions}"
        )
    for item_id, why in done.skipped.items():
        console.print(f"  left out {item_id}: {why}", soft_wrap=True)


@labels_app.command()
def expire(
    days: Annotated[
        float | None, typer.Option(min=0, help="Retention window in days; default REVIEW_RETENTION_DAYS.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Delete kept images, predictions and labels older than the retention window, now."""
    from datetime import UTC, datetime

    from feedback.images import ImageStore
    from feedback.retention import expire as expire_kept
    from flows.settings import get_settings

    settings = get_settings()
    window = settings.review_retention_days if days is None else days
    store, url = _open_store()
    if store is None:
        console.print(f"Nothing to expire: {_no_store(url)}.")
        return
    try:
        expired = expire_kept(store, ImageStore(settings.review_images_url), window)
    finally:
        store.close()
    cutoff = datetime.fromtimestamp(expired.cutoff, UTC).isoformat(timespec="seconds")
    if as_json:
        deleted = {"images_deleted": expired.images_deleted, "images_missing": expired.images_missing}
        typer.echo(json.dumps({"cutoff": cutoff, "days": window, **deleted}))
        return
    console.print(
        f"Deleted what was kept before {cutoff} ({window:g} days): {expired.images_deleted} images"
        + (f" ({expired.images_missing} were already gone)" if expired.images_missing else "")
    )
