"""Training-flow overhead: wall time vs time spent inside tasks, per-candidate fit times.

    python bench/pipeline.py [--data data/synthetic] [--budget 120] [-c NAME ...]

Runs `prepare_data` once to warm the feature cache, then times `train_pipeline` against a
throwaway Prefect home and MLflow store. "Overhead" is wall time during which no task was
running (flow bookkeeping, run creation, the MLflow parent run); the target is <= 15%.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def intervals_union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("-c", "--candidate", action="append")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_ARTIFACT_ROOT"] = str(work / "artifacts")
    os.environ["PIPELINE_PREPARED_DIR"] = str(work / "prepared")

    from prefect.client.orchestration import get_client
    from rich.console import Console
    from rich.table import Table

    from cli.prefect_api import prefect_api
    from flows.prepare import prepare_data
    from flows.settings import get_settings
    from flows.training import train_pipeline

    with prefect_api():
        prepare_data(args.data, settings=get_settings())  # warm the feature cache
        started_wall = time.time()
        started = time.perf_counter()
        summary = train_pipeline(data=args.data, candidates=args.candidate, time_budget_seconds=args.budget)
        wall = time.perf_counter() - started
        with get_client(sync_client=True) as client:
            runs = [r for r in client.read_task_runs(limit=200) if r.start_time and r.end_time]
    runs = [r for r in runs if r.start_time.timestamp() >= started_wall - 1]
    intervals = [(r.start_time.timestamp(), r.end_time.timestamp()) for r in runs]
    busy = intervals_union(intervals)
    compute = sum(stop - start for start, stop in intervals)

    console = Console()
    table = Table(title=f"train_pipeline on {args.data} (warm feature cache)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("flow wall time (s)", f"{wall:.1f}")
    table.add_row("summed task compute (s)", f"{compute:.1f}")
    table.add_row("time with a task running (s)", f"{busy:.1f}")
    table.add_row("parallel speed-up (compute / busy)", f"{compute / busy:.2f}x")
    table.add_row("overhead share (no task running / wall)", f"{(wall - busy) / wall:.1%}")
    console.print(table)
    fits = Table(title="candidates")
    for column in ("candidate", "fit_seconds", "val.macro_f1", "predict_ms_per_image"):
        fits.add_column(column, justify="right")
    for row in summary.leaderboard:
        fits.add_row(
            row["candidate"],
            f"{row['fit_seconds']:.1f}",
            f"{row['val.macro_f1']:.4f}",
            f"{row['predict_ms_per_image']:.3f}",
        )
    console.print(fits)
    console.print(f"winner {summary.winner}; test macro-F1 {summary.test_metrics['test.macro_f1']:.4f}")


if __name__ == "__main__":
    main()
