"""Benchmark of the serving app over real HTTP: single and batch classification, cache effect.

Starts ``python -m serving`` (uvicorn) on a free 127.0.0.1 port in a subprocess, against a
registry you name or a tiny model built here, then sends a bounded number of requests (and
stops early at a time limit) and prints one table. Nothing leaves the loopback interface.

    .venv/bin/python bench/serving.py                       # builds a tiny model first
    .venv/bin/python bench/serving.py --tracking-uri sqlite:///mlruns/mlflow.db --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "vehicle-classifier"


@dataclass
class Phase:
    """Latencies (seconds) of one phase and how long it took overall."""

    name: str
    latencies: list[float]
    wall_seconds: float
    images_per_request: int = 1
    failures: int = 0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.wall_seconds if self.wall_seconds else 0.0


def build_tiny_registry(folder: Path) -> str:
    """A SQLite registry with one logistic-regression model on 84 synthetic images, as champion."""
    sys.path.insert(0, str(ROOT))
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    from tasks.data import load_dataset
    from tasks.registry import log_classifier, register_version
    from tasks.synthetic import generate_dataset
    from vehicle_model.featurizer import Featurizer
    from vehicle_model.model import VehicleClassifier

    generate_dataset(folder / "data", n=84, seed=3)
    dataset = load_dataset(folder / "data")
    featurizer = Featurizer()
    features = featurizer.transform_paths(dataset.frame["image"].tolist())
    heads = {a: LogisticRegression(max_iter=1000).fit(features, dataset.frame[a]) for a in dataset.attributes}
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("bench", artifact_location=str(folder / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        info = log_classifier(VehicleClassifier(featurizer, heads), {"candidate": "logistic_regression"})
    version = register_version(info.model_uri, MODEL_NAME, {"candidate": "logistic_regression"})
    MlflowClient(uri).set_registered_model_alias(MODEL_NAME, "champion", version.version)
    return uri


def distinct_images(count: int, seed: int) -> list[bytes]:
    """JPEGs of vehicle-like scenes, all different (so each one is a cache miss the first time)."""
    images = []
    for i in range(count):
        n = seed * 1_000_003 + i
        image = Image.new("RGB", (320, 240), (n * 7 % 256, n * 13 % 256, n * 29 % 256))
        image.paste((n * 31 % 256, 40, 40), (60, 90, 260, 180))
        image.putpixel((i % 320, (i // 320) % 240), (255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tracking_uri: str, port: int, workdir: Path, args: argparse.Namespace) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODEL_NAME": args.model_name,
        "MODEL_ALIAS": args.alias,
        "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": str(port),
        "SERVING_WORKERS": str(args.workers),
        "RATE_LIMIT_PER_MINUTE": "0",
        "POLL_INTERVAL_SECONDS": "3600",
        "MAX_BATCH_FILES": str(max(64, args.batch_size)),
        "LOG_DIR": str(workdir / "logs"),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
        env["REDIS_KEY_PREFIX"] = f"bench-{port}"
    # Run from the caller's folder so a relative tracking URI means what it meant to them.
    return subprocess.Popen(
        [sys.executable, "-m", "serving"], cwd=Path.cwd(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_ready(base_url: str, server: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            response = httpx.get(f"{base_url}/ready", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


async def run_phase(
    name: str, client: httpx.AsyncClient, requests: list[dict], concurrency: int, deadline: float, images: int = 1
) -> Phase:
    """Sends ``requests`` (multipart ``files=`` payloads) with ``concurrency`` in flight."""
    queue: asyncio.Queue = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while not queue.empty() and time.monotonic() < deadline:
            path, files = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(path, files=files)
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Phase(name, latencies, time.perf_counter() - started, images, failures)


async def benchmark(base_url: str, args: argparse.Namespace) -> list[Phase]:
    deadline = time.monotonic() + args.max_seconds
    singles = distinct_images(args.requests, seed=1)
    batches = [distinct_images(args.batch_size, seed=100 + b) for b in range(args.batches)]
    probe = distinct_images(args.probe, seed=7)
    classify, batch = "/api/vehicle/classify", "/api/vehicle/classify-batch"

    def single(data: bytes) -> tuple[str, dict]:
        return classify, {"file": ("image.jpg", data, "image/jpeg")}

    def many(images: list[bytes]) -> tuple[str, list]:
        return batch, [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]

    limits = httpx.Limits(max_connections=args.concurrency + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        path, files = single(distinct_images(1, seed=999)[0])
        await client.post(path, files=files)  # connection + first-call warm-up
        phases = [
            await run_phase("classify, cache miss, 1 in flight", client, [single(d) for d in probe], 1, deadline),
            await run_phase("classify, cache hit, 1 in flight", client, [single(d) for d in probe], 1, deadline),
            await run_phase(f"classify, cache miss, {args.concurrency} in flight", client,
                            [single(d) for d in singles], args.concurrency, deadline),
            await run_phase(f"classify, cache hit, {args.concurrency} in flight", client,
                            [single(d) for d in singles], args.concurrency, deadline),
            await run_phase(f"batch of {args.batch_size}, miss, {args.concurrency} in flight", client,
                            [many(b) for b in batches], args.concurrency, deadline, images=args.batch_size),
        ]
    return phases


def print_table(phases: list[Phase], ready: dict, args: argparse.Namespace) -> None:
    header = f"{'phase':<38}{'requests':>9}{'failed':>8}{'req/s':>9}{'img/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
    print(f"\nmodel version {ready['model_version']}, redis {ready['redis']}, {args.workers} worker(s), "
          f"{os.cpu_count()} cpu(s)")
    print(header)
    print("-" * len(header))
    for phase in phases:
        print(
            f"{phase.name:<38}{len(phase.latencies):>9}{phase.failures:>8}{phase.requests_per_second:>9.1f}"
            f"{phase.requests_per_second * phase.images_per_request:>9.1f}"
            f"{phase.percentile(0.5) * 1000:>9.1f}{phase.percentile(0.95) * 1000:>9.1f}"
        )
    miss, hit = phases[0], phases[1]
    if miss.latencies and hit.latencies:
        ratio = statistics.median(miss.latencies) / statistics.median(hit.latencies)
        print(f"\ncache hit vs miss (1 in flight): median {statistics.median(hit.latencies) * 1000:.1f} ms vs "
              f"{statistics.median(miss.latencies) * 1000:.1f} ms -> a hit is {ratio:.1f}x faster")
    single_miss, batch_phase = phases[2], phases[4]
    if single_miss.latencies and batch_phase.latencies:
        speedup = batch_phase.requests_per_second * batch_phase.images_per_request / single_miss.requests_per_second
        print(f"batch vs single requests (cache miss): {speedup:.1f}x the images per second")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="registry to serve from; default: build a tiny model in a temp dir")
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--requests", type=int, default=120, help="single-image requests per phase")
    parser.add_argument("--probe", type=int, default=30, help="requests for the 1-in-flight hit/miss phases")
    parser.add_argument("--batches", type=int, default=12, help="batch requests")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--redis-url", help="use this Redis (keys under a bench-<port> prefix)")
    parser.add_argument("--max-seconds", type=float, default=180, help="stop sending after this long")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    server = None
    port = free_port()
    try:
        tracking_uri = args.tracking_uri or build_tiny_registry(workdir / "registry")
        base_url = f"http://127.0.0.1:{port}"
        server = start_server(tracking_uri, port, workdir, args)
        ready = wait_ready(base_url, server, timeout=120)
        phases = asyncio.run(benchmark(base_url, args))
        print_table(phases, ready, args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
            if args.redis_url:
                delete_keys(args.redis_url, f"bench-{port}")
        shutil.rmtree(workdir, ignore_errors=True)


def delete_keys(redis_url: str, prefix: str) -> None:
    from redis import Redis

    client = Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    main()
