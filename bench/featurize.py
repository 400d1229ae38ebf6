"""Featurization throughput: raw backbone, end to end, decode only, and the cached path.

Usage:
    python bench/featurize.py [--n 512] [--batch 32] [--data DIR] [--repeats 3] [--threads T]
        [--precision fp32 --precision int8]

Without ``--data`` it generates ``--n`` synthetic images into a temporary folder. After a
warm-up, each measurement runs ``--repeats`` times, interleaved (a, b, c, d, a, b, c, d, ...)
so that load from other processes on a shared machine falls on all of them alike. The table
shows the best and the median of the repeats; end to end is also given as a share of raw,
and the raw and end-to-end rates of each backbone precision as a multiple of float's.

The caption gives the share to expect when decoding and the backbone take turns on the
same cores: an image then costs about 1/a + 1/(k*c) seconds, k being the decode workers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tasks.data.dataset import IMAGE_COLUMN, load_dataset
from tasks.data.features import FeatureCache, featurize_into_cache
from vehicle_model.featurizer import INPUT_SIZE, Featurizer, _preprocess_into
from vehicle_model.images import decode_image

RAW = "(a) raw backbone: embed"
END_TO_END = "(b) end to end: transform_paths"
PRECISIONS = ("fp32", "int8")
DECODE = "(c) decode+preprocess, 1 thread"
CACHED = "(d) cached: 2nd pass"


def main() -> None:
    args = _parse_args()
    console = Console()
    if not console.is_terminal:
        console.width = 120  # a piped table keeps one line per row
    with tempfile.TemporaryDirectory(prefix="bench-featurize-") as tmp:
        paths = _image_paths(args.data, args.n, Path(tmp), console)
        featurizers = {p: Featurizer(threads=args.threads, batch_size=args.batch, precision=p) for p in args.precision}
        featurizer = featurizers[args.precision[0]]
        cache = FeatureCache(Path(tmp) / "cache", featurizer.version)
        sha256s = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
        cases = _cases(featurizers, paths, sha256s, cache, args.batch)
        for other in featurizers.values():
            other.transform_paths(paths[: 2 * args.batch])  # opens each session
        _warm_up(featurizer, paths, sha256s, cache, args.batch)
        load_before = os.getloadavg()[0]
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, run in cases.items():
                seconds[name].append(_timed(run))
        load = (load_before, os.getloadavg()[0])
        _report(console, seconds, len(paths), featurizer, args.repeats, load, list(featurizers))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images (generated, or the first N of --data)")
    parser.add_argument("--batch", type=int, default=32, help="images per backbone call")
    parser.add_argument("--data", type=Path, help="a dataset (CSV manifest or ImageFolder) instead of synthetic images")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement")
    parser.add_argument(
        "--threads", type=int, help="ONNX Runtime intra-op threads and decode workers (default: usable cores)"
    )
    parser.add_argument(
        "--precision",
        action="append",
        choices=PRECISIONS,
        help="backbone precision to measure (repeatable; default both, float first)",
    )
    args = parser.parse_args()
    args.precision = list(dict.fromkeys(args.precision or PRECISIONS))
    return args


def _image_paths(data: Path | None, n: int, tmp: Path, console: Console) -> list[str]:
    if data is None:
        from tasks.data.synthetic import generate_dataset

        with console.status(f"Generating {n} synthetic images"):
            generate_dataset(tmp / "data", n=n, seed=0)
        data = tmp / "data"
    return list(load_dataset(data).frame[IMAGE_COLUMN])[:n]


def _cases(
    featurizers: dict[str, Featurizer], paths: list[str], sha256s: list[str], cache: FeatureCache, batch: int
) -> dict[str, Callable[[], object]]:
    """Raw and end to end for each precision; decode and cached (which no backbone runs in) once."""
    featurizer = next(iter(featurizers.values()))
    full, rest = divmod(len(paths), batch)
    rng = np.random.default_rng(0)
    batches = [rng.random((batch, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)] * full
    if rest:
        batches.append(rng.random((rest, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32))

    def raw(featurizer: Featurizer) -> None:
        for pixels in batches:
            featurizer.embed(pixels)

    slot = np.empty((3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)

    def decode_only() -> None:
        # What one decode worker does per image: into a reused batch slot, as in transform_paths.
        for path in paths:
            _preprocess_into(decode_image(Path(path).read_bytes(), featurizer.limits), slot)

    def cached() -> None:
        computed = featurize_into_cache(paths, sha256s, cache, featurizer)
        assert computed == 0, f"the cached pass computed {computed} images"

    cases: dict[str, Callable[[], object]] = {}
    for precision, each in featurizers.items():
        cases[_named(RAW, precision)] = lambda each=each: raw(each)
        cases[_named(END_TO_END, precision)] = lambda each=each: each.transform_paths(paths)
    return cases | {DECODE: decode_only, CACHED: cached}


def _named(measurement: str, precision: str) -> str:
    return f"{measurement} ({precision})"


def _warm_up(featurizer: Featurizer, paths: list[str], sha256s: list[str], cache: FeatureCache, batch: int) -> None:
    """Opens the session, reads the files once, and fills the cache for (d)."""
    featurizer.transform_paths(paths[: 2 * batch])
    featurize_into_cache(paths, sha256s, cache, featurizer)


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _report(
    console: Console,
    seconds: dict[str, list[float]],
    n: int,
    featurizer: Featurizer,
    repeats: int,
    load: tuple[float, float],
    precisions: list[str],
) -> None:
    best = {name: n / min(times) for name, times in seconds.items()}
    median = {name: n / statistics.median(times) for name, times in seconds.items()}
    table = Table(
        title=(
            f"{n} images, batch {featurizer.batch_size}, {featurizer.threads} threads on "
            f"{len(os.sched_getaffinity(0))} cores, {repeats} interleaved repeats"
        )
    )
    columns = ("measurement", "img/s best", "img/s median", "% raw best", "% raw median", f"x {precisions[0]} median")
    for column in columns:
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for name in seconds:
        measurement, _, precision = name.rpartition(" (")
        precision = precision.rstrip(")") if measurement else ""
        measurement = measurement or name
        raw = _named(RAW, precision)
        shares = [
            f"{100 * rates[name] / rates[raw]:.0f}%" if measurement == END_TO_END else "" for rates in (best, median)
        ]
        baseline = _named(measurement, precisions[0])
        ratio = f"{median[name] / median[baseline]:.2f}" if precision and baseline in median else ""
        table.add_row(name, f"{best[name]:,.1f}", f"{median[name]:,.1f}", *shares, ratio)
    expected = 1 / (1 + best[_named(RAW, precisions[0])] / (featurizer.threads * best[DECODE]))
    table.caption = (
        f"expected (b)/(a) ({precisions[0]}) from the best rates: 1/(1 + a/(k*c)) = {100 * expected:.0f}% with k = "
        f"{featurizer.threads} decode workers; 1-min load average {load[0]:.1f} before, {load[1]:.1f} after"
    )
    console.print(table)


if __name__ == "__main__":
    main()
