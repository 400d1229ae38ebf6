"""Quality of heads retrained on INT8 backbone features against float ones.

Usage:
    python bench/precision.py [--data DIR] [--n 3000] [--seeds 0 1] [-c linear_svm ...] [--out FILE]

Runs the real training flow (``vehicles train``) once per precision and seed, each into its
own temporary MLflow store and with its own feature cache per precision, so every head is
fitted on features of the precision it is scored with. It prints, per attribute, the
winner's macro-F1 on the clean test split and on each shift kind of the shifted set (test
images only), for each precision averaged over the seeds, and INT8 minus float in points.
Without ``--data`` it generates the default synthetic dataset (``--n`` images, seed 0).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from rich.console import Console
from rich.table import Table

from tasks.tracking import STAGE_TAG
from vehicle_model.metadata import CANDIDATE_TAG

PRECISIONS = ("fp32", "int8")


def main() -> None:
    args = _parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        root = Path(tmp)
        data = args.data or _generate(root / "data", args.n, console)
        runs: dict[tuple[str, int], dict[str, float]] = {}
        for seed in args.seeds:
            for precision in args.precisions:
                started = time.perf_counter()
                runs[precision, seed] = _train(root, data, precision, seed, args.candidate)
                console.print(
                    f"{precision} seed {seed}: winner {runs[precision, seed]['winner']} "
                    f"in {time.perf_counter() - started:.0f} s"
                )
        table = _table(runs, args.precisions, args.seeds)
        console.print(table)
        if args.out:
            args.out.write_text(_markdown(runs, args.precisions, args.seeds))
            console.print(f"Markdown table: {args.out}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a dataset instead of the generated synthetic one")
    parser.add_argument("--n", type=int, default=3000, help="synthetic images to generate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("-c", "--candidate", action="append", help="candidates to train (default: all)")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    return parser.parse_args()


def _generate(folder: Path, n: int, console: Console) -> Path:
    with console.status(f"Generating {n} synthetic images"):
        _vehicles("generate-data", str(folder), "--n", str(n), "--seed", "0")
    return folder


def _train(root: Path, data: Path, precision: str, seed: int, candidates: list[str] | None) -> dict[str, float]:
    """One training run; returns the parent run's test and shift metrics plus the winner's name."""
    store = root / f"{precision}-seed{seed}"
    env = {
        "BACKBONE_PRECISION": precision,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        "MLFLOW_ARTIFACT_ROOT": str(store / "artifacts"),
        "PIPELINE_PREPARED_DIR": str(store / "prepared"),
        "PIPELINE_FEATURE_CACHE_DIR": str(root / f"features-{precision}"),
        "PIPELINE_LOG_DIR": str(store / "logs"),
        "PIPELINE_SHIFTED_EVALUATION": "true",
    }
    store.mkdir(parents=True)
    options = [arg for name in candidates or [] for arg in ("-c", name)]
    _vehicles("train", "--data", str(data), "--seed", str(seed), "--force", *options, env=env)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (parent,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string=f"tags.{STAGE_TAG} = 'pipeline'"
    )
    (version,) = client.search_model_versions()
    return {**parent.data.metrics, "winner": version.tags[CANDIDATE_TAG]}


def _vehicles(*args: str, env: dict[str, str] | None = None) -> None:
    command = [str(Path(sys.executable).parent / "vehicles"), *args]
    subprocess.run(command, check=True, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)


def _rows(runs: dict[tuple[str, int], dict[str, float]], precisions, seeds) -> list[tuple[str, str, list[float]]]:
    """(data, attribute, [mean macro-F1 per precision]) for clean test, each kind and the shifted mean."""
    sample = next(iter(runs.values()))
    attributes = sorted(
        {key.split(".")[1] for key in sample if key.startswith("test.") and key.endswith(".macro_f1")} - {"macro_f1"}
    )
    kinds = sorted(
        {key.split(".")[1] for key in sample if key.startswith("shift.") and key.count(".") == 3} - {"worst"}
    )
    rows = []
    for attribute in attributes:
        for data, prefix in [("clean test", "test"), *[(kind, f"shift.{kind}") for kind in kinds]]:
            rows.append(
                (data, attribute, [_mean(runs, p, seeds, [f"{prefix}.{attribute}.macro_f1"]) for p in precisions])
            )
        shifted = [f"shift.{kind}.{attribute}.macro_f1" for kind in kinds]
        rows.append(("shifted mean", attribute, [_mean(runs, p, seeds, shifted) for p in precisions]))
    return rows


def _mean(runs, precision: str, seeds, keys: list[str]) -> float:
    return float(np.mean([runs[precision, seed][key] for seed in seeds for key in keys]))


def _table(runs, precisions, seeds) -> Table:
    table = Table(title=f"Winner macro-F1 by backbone precision (mean of seeds {', '.join(map(str, seeds))})")
    for column in ("data", "attribute", *precisions, "int8 - fp32 (points)"):
        table.add_column(column, justify="right")
    for data, attribute, values in _rows(runs, precisions, seeds):
        delta = f"{100 * (values[1] - values[0]):+.1f}" if len(values) == 2 else "-"
        table.add_row(data, attribute, *(f"{v:.3f}" for v in values), delta)
    return table


def _markdown(runs, precisions, seeds) -> str:
    lines = [
        f"| data | attribute | {' | '.join(precisions)} | int8 - fp32 (points) |",
        "|---|---|" + "---|" * (len(precisions) + 1),
    ]
    for data, attribute, values in _rows(runs, precisions, seeds):
        delta = f"{100 * (values[1] - values[0]):+.1f}" if len(values) == 2 else "-"
        lines.append(f"| {data} | {attribute} | {' | '.join(f'{v:.3f}' for v in values)} | {delta} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
