"""Whether each candidate keeps its time budget: search and refit seconds against the budget.

Usage:
    python bench/budget.py [FEATURES.npz] [--budget 30 --budget 120] [--candidate NAME ...]
                           [--n 1200] [--threads 1] [--scaling]

FEATURES is an assembled feature file of a prepared dataset (``<prepared>/<fingerprint>/split-seed0.npz``).
Without it, ``--n`` synthetic images are generated and prepared in a temporary folder as a run
prepares them (two augmented copies per training image, greyscale and over-exposed copies).
Each candidate is fitted as training fits it (``fit_candidate``, one thread as the training
task's default), once per budget; the table shows where its seconds went, how far past the
budget it ended, the grid points scored per attribute and what the budget cut. Wall-clock
seconds on a shared machine: the caption gives the load average before and after.

``--scaling`` prints instead how each candidate's fit grows from a search fold's rows to the
refit's (train plus copies), in CPU seconds at each grid point, beside the
``CandidateSpec.cost_power`` the budget plans the refit with.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.base import BaseEstimator
from sklearn.model_selection import ParameterGrid
from threadpoolctl import threadpool_limits

from tasks.data.features import load_split, load_split_if_present
from tasks.data.shifts import AUGMENT_SPLIT, GREYSCALE_CALIBRATION_SPLIT, OVER_EXPOSURE_EXPERT_SPLIT
from tasks.defaults import AUGMENT_COPIES
from tasks.training.candidates import CANDIDATES
from tasks.training.evaluation import evaluate_heads
from tasks.training.search import FittedCandidate, fit_candidate, fit_ready

COLUMNS = ("candidate", "budget s", "search s", "refit s", "total s", "overrun s", "points", "val F1", "stopped early")


def main() -> None:
    args = _parse_args()
    console = Console()
    if not console.is_terminal:
        console.width = 200  # a piped table keeps one line per row
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        features = args.features or _prepared(args.n, Path(tmp), console)
        attributes = _attributes(features)
        names = args.candidate or list(CANDIDATES)
        load_before = os.getloadavg()[0]
        with threadpool_limits(args.threads):
            if args.scaling:
                table = _scaling(features, attributes, names)
            else:
                table = _budgets(features, attributes, names, args.budget, console)
        load_after = os.getloadavg()[0]
        table.caption = f"{args.threads} thread(s); load average {load_before:.1f} before, {load_after:.1f} after"
        console.print(table)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "features", nargs="?", help="assembled features (.npz); default: generate and prepare --n images"
    )
    parser.add_argument("--budget", type=float, action="append", help="seconds per candidate (repeatable; 30 and 120)")
    parser.add_argument("--candidate", action="append", choices=list(CANDIDATES), help="repeatable; default all six")
    parser.add_argument("--n", type=int, default=1200, help="synthetic images to generate without FEATURES")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (training's default is 1)")
    parser.add_argument("--scaling", action="store_true", help="how fits grow with rows, against each cost_power")
    args = parser.parse_args()
    args.budget = args.budget or [30.0, 120.0]
    return args


def _prepared(n: int, tmp: Path, console: Console) -> str:
    """Features of ``n`` generated images, prepared as a training run prepares them."""
    from cli.prefect_api import prefect_api
    from flows.prepare import prepare_data
    from flows.settings import PipelineSettings
    from tasks.data.synthetic import generate_dataset

    with console.status(f"Generating and preparing {n} synthetic images"):
        generate_dataset(tmp / "data", n=n, seed=0)
        settings = PipelineSettings(
            data_dir=tmp, prepared_dir=tmp / "prepared", feature_cache_dir=tmp / "features", log_dir=tmp / "logs"
        )
        with prefect_api():
            return str(prepare_data(str(tmp / "data"), settings=settings, augment_copies=AUGMENT_COPIES).features)


def _budgets(features: str, attributes: list[str], names: list[str], budgets: list[float], console: Console) -> Table:
    """Each candidate fitted once per budget, a row each."""
    table = Table(title=f"Time budget per candidate on {features}")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("candidate", "stopped early") else "right")
    for budget in budgets:
        for name in names:
            with console.status(f"{name}, {budget:g} s"):
                fitted = _fit(features, attributes, name, budget)
            table.add_row(*_row(fitted, budget, features, attributes))
        table.add_section()
    return table


def _attributes(features: str) -> list[str]:
    with np.load(features) as data:
        return sorted(key.split("__", 1)[1] for key in data.files if key.startswith("y_train__"))


def _fit(features: str, attributes: list[str], name: str, budget: float) -> FittedCandidate:
    X, ys = load_split(features, "train", attributes)
    extra = {
        "augmented": load_split_if_present(features, AUGMENT_SPLIT, attributes),
        "greyscale": load_split_if_present(features, GREYSCALE_CALIBRATION_SPLIT, attributes),
        "over_exposed": load_split_if_present(features, OVER_EXPOSURE_EXPERT_SPLIT, attributes),
    }
    return fit_candidate(name, X, ys, budget_seconds=budget, **extra)


def _row(fitted: FittedCandidate, budget: float, features: str, attributes: list[str]) -> list[str]:
    points = len(ParameterGrid(CANDIDATES[fitted.name](0).grid)) or 1
    X_val, ys_val = load_split(features, "validation", attributes)
    f1 = evaluate_heads(fitted.heads, X_val, ys_val, "val")["val.macro_f1"]
    stopped = "; ".join(f"{a}: {why}" for a, why in fitted.stopped_early.items())
    return [
        fitted.name,
        f"{budget:g}",
        f"{fitted.search_seconds:.1f}",
        f"{fitted.fit_seconds - fitted.search_seconds:.1f}",
        f"{fitted.fit_seconds:.1f}",
        f"{max(fitted.fit_seconds - budget, 0.0):.1f}",
        ", ".join(f"{fitted.trials[a]}/{points}" for a in attributes),
        f"{f1:.4f}",
        stopped or "-",
    ]


def _scaling(features: str, attributes: list[str], names: list[str]) -> Table:
    """CPU seconds of one fit on a search fold's rows (two thirds of the clean ones) and on the
    refit's rows, for the first attribute, and the power of rows that relates them."""
    X, ys = load_split(features, "train", attributes)
    copies = load_split_if_present(features, AUGMENT_SPLIT, attributes)
    y = ys[attributes[0]]
    X_all = X if copies is None else np.concatenate([X, copies[0]])
    y_all = y if copies is None else np.concatenate([y, copies[1][attributes[0]]])
    fold = np.random.default_rng(0).permutation(len(y))[: len(y) * 2 // 3]
    table = Table(title=f"Fit seconds (CPU) against rows, {attributes[0]}, {len(fold)} and {len(y_all)} rows")
    for column in ("candidate", "grid point", "fold s", "refit s", "measured power", "cost_power"):
        table.add_column(column, justify="right" if column.endswith(("s", "power")) else "left")
    for name in names:
        spec = CANDIDATES[name](0)
        for point in ParameterGrid(spec.grid):
            small = _fit_cpu_seconds(fit_ready(spec.estimator, point, len(fold)), X[fold], y[fold])
            large = _fit_cpu_seconds(fit_ready(spec.estimator, point, len(y_all)), X_all, y_all)
            power = np.log(large / small) / np.log(len(y_all) / len(fold))
            cells = (f"{small:.2f}", f"{large:.2f}", f"{power:.2f}", f"{spec.cost_power:g}")
            table.add_row(name, _short(point), *cells)
        table.add_section()
    return table


def _short(point: dict[str, object]) -> str:
    return ", ".join(f"{key.rsplit('__', 1)[-1]}={value}" for key, value in point.items())


def _fit_cpu_seconds(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray) -> float:
    started = time.process_time()
    estimator.fit(X, y)
    return time.process_time() - started


if __name__ == "__main__":
    main()
