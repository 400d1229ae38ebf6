"""What the heads cost at serving time: each candidate's, and the vote's, on precomputed features.

Usage:
    python bench/heads.py FEATURES.npz [--budget 120] [--images 200] [--batch 32] [--threads 1]
                          [--rounds 5] [--cache HEADS.joblib]

FEATURES is an assembled feature file of a prepared dataset (``<prepared>/<fingerprint>/split-seed0.npz``).
Each of the six candidates is fitted as training fits it (train split, its augmented copies,
greyscale temperatures and over-exposure experts when the file holds them, the training
budget by default), since the hyperparameters chosen set a head's cost (trees' sizes, support
vectors); the vote is chosen on validation as training chooses it, and a vote of all six shows
the most a vote can cost. The backbone runs once per frame whatever the heads, so this is the
whole difference between them: milliseconds per image for lone requests (one row per call, the
median) and for batches of ``--batch`` rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import joblib
import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from tasks.data.features import load_split, load_split_if_present
from tasks.data.shifts import AUGMENT_SPLIT, GREYSCALE_CALIBRATION_SPLIT, OVER_EXPOSURE_EXPERT_SPLIT
from tasks.defaults import TIME_BUDGET_SECONDS
from tasks.training.candidates import CANDIDATES
from tasks.training.search import FittedCandidate, fit_candidate
from tasks.training.vote import choose_vote
from vehicle_model.vote import VoteHead

ATTRIBUTES = ["vehicle_type", "color"]


def main() -> None:
    args = _parse_args()
    with threadpool_limits(args.threads):
        fitted = _fitted(args.features, args.budget, args.cache)
        X_val, ys_val = load_split(args.features, "validation", ATTRIBUTES)
        vote = choose_vote(fitted, X_val, ys_val)
        rows = dict(fitted)
        rows[f"vote ({vote.members_line()})"] = vote.heads
        rows["vote of all six"] = {a: VoteHead([h[a] for h in fitted.values()], list(fitted)) for a in ATTRIBUTES}
        X_test, _ = load_split(args.features, "test", ATTRIBUTES)
        lone, batched = _timings(rows, X_test, args)
    table = Table(title=f"Heads per image on precomputed features ({args.threads} thread(s), best of {args.rounds})")
    for column in ("heads", "lone request ms", f"batch of {args.batch} ms/image", "bytes"):
        table.add_column(column, justify="left" if column == "heads" else "right")
    for name, heads in rows.items():
        size = FittedCandidate(name, heads).model_bytes()
        table.add_row(name, f"{lone[name]:.3f}", f"{batched[name]:.3f}", f"{size:,}")
    Console(width=160).print(table)


def _fitted(features: str, budget: float, cache: Path | None) -> dict[str, dict[str, object]]:
    """Candidate -> attribute -> fitted head; from ``cache`` when it exists (fitting takes minutes)."""
    if cache is not None and cache.exists():
        return joblib.load(cache)
    X, ys = load_split(features, "train", ATTRIBUTES)
    extra = {
        "augmented": load_split_if_present(features, AUGMENT_SPLIT, ATTRIBUTES),
        "greyscale": load_split_if_present(features, GREYSCALE_CALIBRATION_SPLIT, ATTRIBUTES),
        "over_exposed": load_split_if_present(features, OVER_EXPOSURE_EXPERT_SPLIT, ATTRIBUTES),
    }
    fitted = {name: fit_candidate(name, X, ys, budget_seconds=budget, **extra).heads for name in CANDIDATES}
    if cache is not None:
        joblib.dump(fitted, cache)
    return fitted


def _timings(
    rows: dict[str, dict[str, object]], X: np.ndarray, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """Each row's lone-request and batched milliseconds per image, the best of ``args.rounds``
    rounds that take the rows in turn, so a busy spell of a shared machine hits them all alike."""
    lone = dict.fromkeys(rows, float("inf"))
    batched = dict.fromkeys(rows, float("inf"))
    for _ in range(args.rounds):
        for name, heads in rows.items():
            lone[name] = min(lone[name], _lone_ms(heads, X[: args.images]))
            batched[name] = min(batched[name], _batched_ms(heads, X, args.batch))
    return lone, batched


def _lone_ms(heads: dict[str, object], X: np.ndarray) -> float:
    """Median over rows of one call per head with that row alone."""
    times = []
    for row in range(len(X)):
        started = time.perf_counter()
        for head in heads.values():
            head.predict_proba(X[row : row + 1])
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def _batched_ms(heads: dict[str, object], X: np.ndarray, batch: int) -> float:
    """One pass over ``X`` in batches, per image."""
    started = time.perf_counter()
    for start in range(0, len(X), batch):
        for head in heads.values():
            head.predict_proba(X[start : start + batch])
    return 1000.0 * (time.perf_counter() - started) / len(X)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", help="an assembled feature file (split-seed0.npz of a prepared dataset)")
    parser.add_argument(
        "--budget", type=float, default=TIME_BUDGET_SECONDS, help="search budget per candidate, seconds"
    )
    parser.add_argument("--images", type=int, default=200, help="test rows timed one by one")
    parser.add_argument("--batch", type=int, default=32, help="rows per call in the batched pass")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over every row; the best counts")
    parser.add_argument("--cache", type=Path, help="joblib file of the fitted heads: written once, then read")
    return parser.parse_args()


if __name__ == "__main__":
    main()
