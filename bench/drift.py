"""Drift detection power and false alarms on real images, and the prediction log's cost.

Usage:
    python bench/drift.py [--train 700] [--pool 600] [--windows 20] [--sizes 30 100 300]
    python bench/drift.py --overhead-only [--requests 200]

Part 1 trains logistic-regression heads on ``--train`` synthetic images (seed 0), takes the
validation third as the reference sample (as registration does), and draws windows of each
size from ``--pool`` unseen images of the same generator (seed 1): as they are
(in-distribution), darkened (night shots), low-contrast (a fogged or broken camera), and of one
vehicle type only. Each window goes through ``tasks.monitoring.drift.detect`` with the default thresholds;
the table gives the share of windows flagged (detection rate; for in-distribution windows, the
false-alarm rate) and what was flagged most often.

Part 2 measures classify throughput of the serving app in-process with the prediction log on
and off (Redis on ``--redis-url``; sample rate 1, no rate cap), interleaved runs, distinct image
bytes per request so the result cache never answers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression

from tasks.data.synthetic import generate_dataset
from tasks.monitoring.drift import Thresholds, detect, records_frame
from tasks.monitoring.reference import reference_records
from vehicle_model.featurizer import Featurizer
from vehicle_model.model import VehicleClassifier
from vehicle_model.records import prediction_record

ATTRIBUTES = ("vehicle_type", "color")
SHIFTS = {
    "in-distribution": lambda image: image,
    "dark (brightness x0.3)": lambda image: ImageEnhance.Brightness(image).enhance(0.3),
    "low contrast (x0.3)": lambda image: ImageEnhance.Contrast(image).enhance(0.3),
}
ONE_CLASS = "one vehicle type only"


def main() -> None:
    args = _parse_args()
    console = Console()
    if not console.is_terminal:
        console.width = 140
    if not args.overhead_only:
        detection(args, console)
    if args.redis_url:
        asyncio.run(overhead(args, console))


def detection(args: argparse.Namespace, console: Console) -> None:
    featurizer = Featurizer()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        console.print(f"Generating {args.train} training and {args.pool} unseen images...")
        train = _dataset(Path(tmp) / "train", args.train, seed=0)
        pool = _dataset(Path(tmp) / "pool", args.pool, seed=1)
        console.print("Featurizing...")
        X = featurizer.transform_paths(list(train["path"]))
        split = np.random.default_rng(0).permutation(len(train))
        fit, val = split[: len(split) * 2 // 3], split[len(split) * 2 // 3 :]
        heads = {a: LogisticRegression(max_iter=2000).fit(X[fit], train[a].to_numpy()[fit]) for a in ATTRIBUTES}
        classifier = VehicleClassifier(featurizer=featurizer, heads=heads)
        reference = records_frame(reference_records(classifier, X[val], "bench", "1"))
        traffic = {name: _records(classifier, pool, shift) for name, shift in SHIFTS.items()}
    majority = pool["vehicle_type"].mode()[0]
    in_dist = traffic["in-distribution"]
    traffic[ONE_CLASS] = [r for r, label in zip(in_dist, pool["vehicle_type"]) if label == majority]
    rows = _windows(reference, traffic, args.sizes, args.windows)
    _table(console, rows, args, len(reference), len(traffic[ONE_CLASS]))


def _dataset(root: Path, n: int, seed: int) -> pd.DataFrame:
    frame = pd.read_csv(generate_dataset(root, n=n, seed=seed))
    frame["path"] = [str(root / image) for image in frame["image"]]
    return frame


def _records(classifier: VehicleClassifier, pool: pd.DataFrame, shift) -> list[dict]:
    images = [shift(Image.open(path).convert("RGB")) for path in pool["path"]]
    predictions, summaries = classifier.predict_images_summarised(images)
    return [
        prediction_record(p, x, region="bench", model="bench", version="1", time=0.0)
        for p, x in zip(predictions, summaries)
    ]


def _windows(reference: pd.DataFrame, traffic: dict[str, list[dict]], sizes: list[int], count: int) -> list[dict]:
    rng = np.random.default_rng(7)
    thresholds = Thresholds(min_records=2)
    rows = []
    for kind, records in traffic.items():
        for size in sizes:
            flagged, named = 0, Counter()
            for _ in range(count):
                picks = rng.choice(len(records), size=size, replace=size > len(records))
                result = detect(reference, records_frame([records[i] for i in picks]), thresholds)[0]["all"]
                flagged += result.drift
                named.update(result.drifted)
            rows.append(
                {"kind": kind, "size": size, "rate": flagged / count, "named": named, "replace": size > len(records)}
            )
    return rows


def _table(console: Console, rows: list[dict], args: argparse.Namespace, reference: int, one_class: int) -> None:
    t = Thresholds()
    table = Table(
        title=(
            f"Drift detected per window ({args.windows} windows each; reference: {reference} validation records; "
            f"p < {t.p_value}, score >= {t.min_effect}, feature share >= {t.feature_share})"
        )
    )
    for column in ("shift", "window size", "flagged", "most often flagged on"):
        table.add_column(column)
    for row in rows:
        rate = f"{row['rate']:.0%}" + (" (false alarms)" if row["kind"] == "in-distribution" else "")
        named = ", ".join(f"{name} {n}/{args.windows}" for name, n in row["named"].most_common(3)) or "-"
        size = f"{row['size']}" + (f" (drawn with replacement from {one_class})" if row["replace"] else "")
        table.add_row(row["kind"], size, rate, named)
    console.print(table)
    console.print(f"load average: {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores")


async def overhead(args: argparse.Namespace, console: Console) -> None:
    """Classify throughput in-process with the prediction log on and off, interleaved."""
    import sys

    # Run as a script, this folder leads sys.path and bench/serving.py would shadow the package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from litestar.testing import AsyncTestClient
    from redis import Redis

    from serving.app import create_app
    from serving.model.service import ModelService
    from serving.model.source import LoadedModel
    from serving.settings import ServingSettings
    from vehicle_model.records import log_key

    with tempfile.TemporaryDirectory(prefix="bench-drift-log-") as tmp:
        frame = _dataset(Path(tmp) / "data", 70, seed=3)
        featurizer = Featurizer()
        X = featurizer.transform_paths(list(frame["path"]))
        heads = {a: LogisticRegression(max_iter=2000).fit(X, frame[a].to_numpy()) for a in ATTRIBUTES}
        model = LoadedModel(
            name="bench", version="1", alias="champion", classifier=VehicleClassifier(featurizer, heads)
        )
        base = Image.open(frame["path"][0]).convert("RGB")
        prefix = f"bench-drift-{uuid.uuid4().hex[:8]}"

        def png(i: int) -> bytes:  # distinct bytes per request: the result cache never answers
            image = base.copy()
            image.putpixel((0, 0), (i % 256, (i // 256) % 256, 7))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()

        redis = Redis.from_url(args.redis_url)

        def cpu_seconds() -> float:  # this process (event loop, inference and writer threads) + Redis
            info = redis.info("cpu")
            return time.process_time() + info["used_cpu_user"] + info["used_cpu_sys"]

        async def run(sample_rate: float, offset: int) -> tuple[float, float]:
            """(requests per second, CPU ms per request) for one pass."""
            settings = ServingSettings(
                redis_url=args.redis_url,
                redis_key_prefix=prefix,
                rate_limit_per_minute=0,
                log_dir=Path(tmp) / "logs",
                prediction_log_sample_rate=sample_rate,
                prediction_log_max_per_second=0,
                inference_threads=2,
            )
            service = ModelService(None, model, inference_threads=2, onnx_threads=1)
            bodies = [png(offset + i) for i in range(args.requests)]
            async with AsyncTestClient(create_app(settings, service)) as client:
                queue = asyncio.Queue()
                for body in bodies:
                    queue.put_nowait(body)

                async def worker() -> None:
                    while not queue.empty():
                        body = queue.get_nowait()
                        response = await client.post(
                            "/api/vehicle/classify", files={"file": ("x.png", body, "image/png")}
                        )
                        assert response.status_code == 200, response.text

                started, cpu = time.perf_counter(), cpu_seconds()
                await asyncio.gather(*(worker() for _ in range(4)))
                elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
            return args.requests / elapsed, cpu * 1000 / args.requests

        runs: dict[str, list[tuple[float, float]]] = {"log off": [], "log on": []}
        await run(0.0, 10**6)  # warm-up
        for repeat in range(args.repeats):
            for name, rate in (("log off", 0.0), ("log on", 1.0)):
                runs[name].append(await run(rate, repeat * 10_000 + (rate > 0) * 5_000))
        logged = redis.xlen(log_key(prefix))
        redis.delete(log_key(prefix))
        direct = await _direct_cost(args.redis_url, prefix, model.classifier, X[:1])
        redis.delete(log_key(prefix))
    title = (
        f"Classify, {args.requests} single-image requests x {args.repeats} interleaved passes, 4 concurrent, "
        "in-process app with Redis"
    )
    table = Table(title=title)
    for column in ("prediction log", "req/s (median)", "req/s per pass", "CPU ms/req (median)", "CPU ms/req per pass"):
        table.add_column(column)
    for name, values in runs.items():
        rates, costs = [v[0] for v in values], [v[1] for v in values]
        table.add_row(
            name,
            f"{statistics.median(rates):.1f}",
            ", ".join(f"{v:.1f}" for v in rates),
            f"{statistics.median(costs):.2f}",
            ", ".join(f"{v:.2f}" for v in costs),
        )
    console.print(table)
    # Paired by pass, so a slow moment of the machine falls on both sides of a ratio.
    cost = statistics.median(on[1] / off[1] - 1 for off, on in zip(runs["log off"], runs["log on"]))
    rate = statistics.median(1 - on[0] / off[0] for off, on in zip(runs["log off"], runs["log on"]))
    console.print(
        f"overhead of logging (median of paired passes): CPU per request {cost:+.1%}, throughput {rate:+.1%} "
        f"(target < 5%; CPU per request is what sets throughput on saturated cores and barely depends on "
        f"other load); {logged} records written; load average {os.getloadavg()[0]:.1f}"
    )
    per_request = statistics.median(v[1] for v in runs["log off"]) * 1000
    total = sum(direct.values())
    console.print(
        "direct cost per logged image, timed alone: "
        + ", ".join(f"{k} {v:.1f} us" for k, v in direct.items())
        + f"; {total:.0f} us in all = {total / per_request:.2%} of a request's {per_request / 1000:.1f} CPU ms"
    )


async def _direct_cost(
    redis_url: str, prefix: str, classifier, features: np.ndarray, n: int = 2000
) -> dict[str, float]:
    """Microseconds per image of each step logging adds: the summary, the queueing, the write."""
    from prometheus_client import CollectorRegistry, Counter
    from redis.asyncio import Redis as AsyncRedis

    from serving.monitoring.prediction_log import PredictionLog
    from serving.storage.stores import RedisGuard
    from vehicle_model.records import summarise

    registry = CollectorRegistry()
    log = PredictionLog(
        RedisGuard(AsyncRedis.from_url(redis_url)),
        prefix,
        Counter("written", "", registry=registry),
        Counter("dropped", "", ["reason"], registry=registry),
        queue_size=n,
    )
    prediction = classifier.predict_features(features)[0]
    started = time.process_time()
    for _ in range(n):
        summary = summarise(features)
    summarised = time.process_time()
    for _ in range(n):
        log.submit("bench", "1", "eu", [prediction], summary)
    submitted = time.process_time()
    assert await log.flush() == n
    flushed = time.process_time()
    await log.guard.close()
    return {
        "summary (projection + tone)": (summarised - started) / n * 1e6,
        "submit": (submitted - summarised) / n * 1e6,
        "encode + XADD (client side)": (flushed - submitted) / n * 1e6,
    }


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=700)
    parser.add_argument("--pool", type=int, default=600)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--overhead-only", action="store_true")
    parser.add_argument(
        "--redis-url", default=None, help="also measure the prediction log's overhead against this Redis"
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved off/on passes for the overhead")
    return parser.parse_args()


if __name__ == "__main__":
    main()
