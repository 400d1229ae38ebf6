"""Serving speed: this app over HTTP against the model's in-process limit and `mlflow models serve`.

One run measures, on the same images and interleaved (each repeat runs every configuration
once, so load from other processes falls on all of them alike):

- the in-process limit: decode + featurize + heads of the same champion in this process, no
  HTTP, with the same number of images in flight (as that many threads calling the model with
  one image each, and as one caller batching that many images; the faster is the limit);
- this app (``python -m serving``, one uvicorn worker) at each concurrency;
- ``mlflow models serve`` of the same version (one worker) at each concurrency;
- the HTTP floor (``bench/http_floor.py``: Litestar on the same uvicorn options, one route, no
  model or features) at each concurrency, and at 1 in flight once more holding a core on a
  worker thread for the in-process p50: what any service of this kind pays before its features;
- a classify-batch of 32 and a report read on a cache hit, one in flight.

Every classify request carries bytes no earlier request sent (a JPEG comment segment makes
each copy distinct; the pixels cycle through real synthetic scenes), so the result cache never
answers; a response that says ``cached`` is counted apart. The rate limit is off. The client is
a minimal HTTP/1.1 keep-alive client on asyncio, cheap enough to leave the cores to the
servers; server CPU is read from /proc, so ``core-ms/img`` is what one image cost the server,
``event loop core-ms/img`` the part spent on the app's main thread, ``cores busy`` the server's
CPU per second of the phase and ``machine idle %`` what nobody used (/proc/stat).

    .venv/bin/python bench/serving.py                 # trains a tiny champion in a temp dir
    .venv/bin/python bench/serving.py --quick         # one repeat, fewer requests (~1 min)
    .venv/bin/python bench/serving.py --tracking-uri sqlite:///mlruns/mlflow.db
    .venv/bin/python bench/serving.py --app one-thread=multipart:INFERENCE_THREADS=1 --app default=multipart
    # the backbone precisions, and the app before a change (another checkout) on the float model:
    .venv/bin/python bench/serving.py --app fp32=raw:MODEL_ALIAS=fp32 --app int8=raw:MODEL_ALIAS=int8 \
        --app before=raw:MODEL_ALIAS=fp32,CODE=/tmp/before

Nothing leaves the loopback interface; every phase is bounded in requests and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "vehicle-classifier"
CLASSIFY = "/api/vehicle/classify"
BATCH = "/api/vehicle/classify-batch"
REPORT = "/api/vehicle/report"
IN_PROCESS = "in-process"
MLFLOW = "mlflow serve"
FLOOR = "HTTP floor (bare Litestar)"
FLOOR_REPEAT = 10  # the floor answers in well under a millisecond: send more so its CPU reads well
FLOOR_HOLD = "HTTP floor + model-length hold on a thread"
BATCH_SIZE = 32


# --------------------------------------------------------------------------- images


def base_images(folder: Path, count: int, size: tuple[int, int]) -> list[bytes]:
    """``count`` synthetic vehicle scenes (the training generator's), re-encoded as JPEG at ``size``."""
    sys.path.insert(0, str(ROOT))
    from tasks.data.dataset import load_dataset
    from tasks.data.synthetic import generate_dataset

    generate_dataset(folder, n=count, seed=11)
    images = []
    for path in load_dataset(folder).frame["image"]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


class DistinctImages:
    """Hands out JPEGs whose bytes were never handed out before (same pixels, new comment)."""

    def __init__(self, bases: list[bytes]) -> None:
        self.bases = bases
        self.count = 0

    def take(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            base = self.bases[self.count % len(self.bases)]
            comment = f"bench {self.count} {uuid.uuid4().hex}".encode()
            # A COM segment right after SOI: valid JPEG, ignored by decoders, new sha256.
            out.append(base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:])
            self.count += 1
        return out


# --------------------------------------------------------------------------- HTTP


def http_request(path: str, body: bytes, content_type: str, method: str = "POST") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def multipart(files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, filename, JPEG bytes) parts, and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, filename, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def classify_request(image: bytes, body: str) -> bytes:
    if body == "raw":
        return http_request(CLASSIFY, image, "image/jpeg")
    payload, content_type = multipart([("file", "car.jpg", image)])
    return http_request(CLASSIFY, payload, content_type)


def mlflow_request(image: bytes) -> bytes:
    payload = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(image).decode("ascii")]]}}
    return http_request("/invocations", json.dumps(payload).encode(), "application/json")


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """Sends one request on a keep-alive connection; returns the status and the body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"response without content-length: {head[:200]!r}")
    return status, await reader.readexactly(length)


@dataclass
class Phase:
    """What one configuration did at one concurrency in one repeat."""

    latencies: list[float]
    wall_seconds: float
    cpu_seconds: float
    images_per_request: int = 1
    failures: int = 0
    cache_hits: int = 0
    first_error: str = ""
    client_cpu_seconds: float = float("nan")  # this bench process, the HTTP client, on the same cores
    redis_cpu_seconds: float = float("nan")  # redis-server's own CPU, when the app uses Redis
    loop_cpu_seconds: float = float("nan")  # the app's event loop thread alone
    idle: float = float("nan")  # share of the machine's CPU time left idle during the phase
    rss_mb: float = float("nan")  # the server's resident memory (process tree) at the end of the phase

    def _per_image(self, seconds: float) -> float:
        images = len(self.latencies) * self.images_per_request
        return seconds * 1000 / images if images else float("nan")

    @property
    def images_per_second(self) -> float:
        return len(self.latencies) * self.images_per_request / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")

    @property
    def core_ms_per_image(self) -> float:
        return self._per_image(self.cpu_seconds)

    @property
    def client_ms_per_image(self) -> float:
        return self._per_image(self.client_cpu_seconds)

    @property
    def redis_ms_per_image(self) -> float:
        return self._per_image(self.redis_cpu_seconds)

    @property
    def loop_ms_per_image(self) -> float:
        return self._per_image(self.loop_cpu_seconds)

    @property
    def cores_busy(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else float("nan")


def machine_cpu() -> tuple[int, int]:
    """(idle, total) CPU time of the whole machine so far, in ticks, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


def idle_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else float("nan")


async def http_phase(
    port: int,
    requests: list[bytes],
    concurrency: int,
    max_seconds: float,
    cpu: Callable[[], float],
    images_per_request: int = 1,
    expect_miss: bool = True,
    redis_cpu: Callable[[], float] | None = None,
    loop_cpu: Callable[[], float] | None = None,
) -> Phase:
    """Sends ``requests`` over ``concurrency`` keep-alive connections, each waiting for its answer."""
    pending = iter(requests)
    latencies: list[float] = []
    phase = Phase(latencies, 0.0, 0.0, images_per_request)
    deadline = time.monotonic() + max_seconds
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for request in pending:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            status, body = await exchange(reader, writer, request)
            elapsed = time.perf_counter() - started
            if status != 200:
                phase.failures += 1
                phase.first_error = phase.first_error or f"{status} {body[:200]!r}"
            elif expect_miss and b'"cached":true' in body:
                phase.cache_hits += 1
            else:
                latencies.append(elapsed)

    redis_before = redis_cpu() if redis_cpu else float("nan")
    loop_before, machine_before = loop_cpu() if loop_cpu else float("nan"), machine_cpu()
    cpu_before, client_before, started = cpu(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in connections))
    phase.wall_seconds, phase.cpu_seconds = time.perf_counter() - started, cpu() - cpu_before
    phase.idle = idle_share(machine_before, machine_cpu())
    phase.loop_cpu_seconds = (loop_cpu() if loop_cpu else float("nan")) - loop_before
    phase.client_cpu_seconds = time.process_time() - client_before
    phase.redis_cpu_seconds = (redis_cpu() if redis_cpu else float("nan")) - redis_before
    for _, writer in connections:
        writer.close()
    return phase


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """User + system CPU of one thread (the main thread: ``tid == pid``), from /proc."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB, from /proc."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Server:
    """One HTTP server under test."""

    label: str
    process: subprocess.Popen
    port: int
    log: Path
    body: str = "multipart"  # how classify requests are sent: multipart, raw or mlflow

    def cpu(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def loop_cpu(self) -> float:
        """The server's main thread: uvicorn's event loop (one worker)."""
        return thread_cpu_seconds(self.process.pid, self.process.pid)

    def request(self, image: bytes) -> bytes:
        return mlflow_request(image) if self.body == "mlflow" else classify_request(image, self.body)

    def wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} not ready in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def wait_shadow(self, timeout: float) -> None:
        """Until the app names a loaded shadow version in its metadata (``SHADOW_ALIAS``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{self.port}/api/models/metadata", timeout=10) as response:
                if json.load(response).get("shadow"):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{self.label}: no shadow loaded in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def start(
    label: str, command: list[str], env: dict[str, str], workdir: Path, body: str, cwd: Path | None = None
) -> Server:
    """Starts a server on a free port; by default from the caller's folder, so a relative tracking URI
    means what it meant to them."""
    port = free_port()
    log = workdir / f"{label.replace(' ', '-')}.log"
    command = [part.replace("{port}", str(port)) for part in command]
    env = {**env, "SERVING_PORT": str(port)}
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=cwd or Path.cwd(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(label, process, port, log, body)


def base_env(tracking_uri: str, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "INFERENCE_THREADS", "PYTHONPATH")}
    return {**env, "MLFLOW_TRACKING_URI": tracking_uri, "NO_PROXY": "127.0.0.1,localhost"}


def start_app(
    label: str, body: str, extra: dict[str, str], tracking_uri: str, workdir: Path, args: argparse.Namespace
) -> Server:
    env = {
        **base_env(tracking_uri, args),
        "MODEL_NAME": args.model_name,
        "MODEL_ALIAS": args.alias,
        "SERVING_HOST": "127.0.0.1",
        "RATE_LIMIT_PER_MINUTE": "0",
        # A first registry lookup slowed by a busy machine is retried soon, never given up on.
        "POLL_INTERVAL_SECONDS": "30",
        "REGISTRY_TIMEOUT_SECONDS": "300",
        "MAX_BATCH_FILES": str(BATCH_SIZE),
        "LOG_DIR": str(workdir / f"logs-{label}"),
        **extra,
    }
    # CODE=<checkout> runs that checkout's app (e.g. the code before a change, in the same run).
    code = Path(env.pop("CODE", ROOT))
    env["PYTHONPATH"] = str(code)
    if args.redis_url and "REDIS_URL" not in extra:  # REDIS_URL= in a configuration means memory stores
        env["REDIS_URL"] = args.redis_url
        env["REDIS_KEY_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
        args.redis_prefixes.append(env["REDIS_KEY_PREFIX"])
    return start(label, [sys.executable, "-m", "serving"], env, workdir, body, cwd=code if code != ROOT else None)


def start_floor(tracking_uri: str, workdir: Path, args: argparse.Namespace) -> Server:
    """bench/http_floor.py: the same uvicorn options, one route, no model or features."""
    env = {**base_env(tracking_uri, args), "SERVING_HOST": "127.0.0.1", "PYTHONPATH": str(ROOT)}
    return start(FLOOR, [sys.executable, "-P", str(ROOT / "bench" / "http_floor.py")], env, workdir, "raw")


def start_mlflow(model_uri: str, tracking_uri: str, workdir: Path, args: argparse.Namespace) -> Server:
    mlflow = str(Path(sys.executable).parent / "mlflow")
    env = base_env(tracking_uri, args)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # it execs `uvicorn`
    command = [
        mlflow,
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        "{port}",
        "-w",
        "1",
    ]
    return start(MLFLOW, command, env, workdir, "mlflow")


# --------------------------------------------------------------------------- in process


class InProcess:
    """The champion in this process: decode + featurize + heads, no HTTP.

    Two copies: ``wide`` runs each backbone call on every core, ``narrow`` on one thread (so
    several callers run side by side without sharing a call's threads).
    """

    def __init__(self, wide, narrow) -> None:
        self.wide = wide
        self.narrow = narrow

    def cpu(self) -> float:
        return time.process_time()

    def threads(self, classifier, images: list[bytes], concurrency: int, max_seconds: float) -> Phase:
        """``concurrency`` threads, each predicting one image at a time."""
        pending = iter(images)
        lock = threading.Lock()
        latencies: list[float] = []
        deadline = time.monotonic() + max_seconds

        def worker() -> None:
            while time.monotonic() < deadline:
                with lock:
                    image = next(pending, None)
                if image is None:
                    return
                started = time.perf_counter()
                classifier.predict_bytes([image])
                latencies.append(time.perf_counter() - started)

        cpu_before, machine_before, started = self.cpu(), machine_cpu(), time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(worker) for _ in range(concurrency)]:
                future.result()
        return Phase(
            latencies,
            time.perf_counter() - started,
            self.cpu() - cpu_before,
            idle=idle_share(machine_before, machine_cpu()),
        )

    def batches(self, images: list[bytes], size: int, max_seconds: float) -> Phase:
        """One caller predicting ``size`` images per call on every core; latency is the call's."""
        latencies: list[float] = []
        deadline = time.monotonic() + max_seconds
        cpu_before, machine_before, started = self.cpu(), machine_cpu(), time.perf_counter()
        for i in range(0, len(images) - size + 1, size):
            if time.monotonic() > deadline:
                break
            call = time.perf_counter()
            self.wide.predict_bytes(images[i : i + size])
            latencies.append(time.perf_counter() - call)
        return Phase(
            latencies,
            time.perf_counter() - started,
            self.cpu() - cpu_before,
            images_per_request=size,
            idle=idle_share(machine_before, machine_cpu()),
        )

    def measure(self, results: Results, images: list[bytes], concurrency: int, max_seconds: float) -> None:
        cores = len(os.sched_getaffinity(0))
        results.add(
            f"{IN_PROCESS}, 1 img/call, {cores} ONNX thr",
            concurrency,
            self.threads(self.wide, images, concurrency, max_seconds),
        )
        if concurrency > 1:
            results.add(
                f"{IN_PROCESS}, 1 img/call, 1 ONNX thr",
                concurrency,
                self.threads(self.narrow, images, concurrency, max_seconds),
            )
            results.add(
                f"{IN_PROCESS}, {concurrency} img/call", concurrency, self.batches(images, concurrency, max_seconds)
            )


def load_champion(tracking_uri: str, model_uri: str, threads: int | None = None):
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri)
    classifier = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().classifier
    classifier.featurizer.threads = threads or classifier.featurizer.threads
    classifier.predict_bytes([DistinctImages(_blank()).take(1)[0]])  # opens the ONNX session
    return classifier


def _blank() -> list[bytes]:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (128, 128, 128)).save(buffer, "JPEG")
    return [buffer.getvalue()]


# --------------------------------------------------------------------------- registry


def build_tiny_registry(folder: Path, console: Console) -> str:
    """A SQLite registry with a logistic-regression model on 84 synthetic images per backbone
    precision, each behind an alias of its name (``fp32``, ``int8``); ``champion`` is the one
    training would pick on this CPU (``BACKBONE_PRECISION=auto``). ``int8-heads`` is a retrain
    of the INT8 one with other heads on the same features: a shadow that shares its featurizer."""
    sys.path.insert(0, str(ROOT))
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    from tasks.data.dataset import load_dataset
    from tasks.data.synthetic import generate_dataset
    from tasks.registry.versions import log_classifier, register_version
    from vehicle_model.featurizer import BACKBONES, Featurizer, resolve_precision
    from vehicle_model.model import VehicleClassifier

    with console.status("Training tiny champions (84 synthetic images, logistic regression, each precision)"):
        generate_dataset(folder / "data", n=84, seed=3)
        dataset = load_dataset(folder / "data")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.create_experiment("bench", artifact_location=str(folder / "artifacts"))
        client = MlflowClient(uri)
        for precision in BACKBONES:
            featurizer = Featurizer(precision=precision)
            features = featurizer.transform_paths(dataset.frame["image"].tolist())
            heads = {a: LogisticRegression(max_iter=1000).fit(features, dataset.frame[a]) for a in dataset.attributes}
            with mlflow.start_run(experiment_id=experiment):
                info = log_classifier(VehicleClassifier(featurizer, heads), {"candidate": "logistic_regression"})
            version = register_version(info.model_uri, MODEL_NAME, {"candidate": "logistic_regression"})
            client.set_registered_model_alias(MODEL_NAME, precision, version.version)
            if precision == resolve_precision("auto"):
                client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
            if precision == "int8":
                heads = {a: LogisticRegression(C=0.05, max_iter=1000).fit(features, dataset.frame[a]) for a in heads}
                with mlflow.start_run(experiment_id=experiment):
                    info = log_classifier(VehicleClassifier(featurizer, heads), {"candidate": "logistic_regression"})
                version = register_version(info.model_uri, MODEL_NAME, {"candidate": "logistic_regression"})
                client.set_registered_model_alias(MODEL_NAME, "int8-heads", version.version)
    return uri


def resolve_version(tracking_uri: str, name: str, alias: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)


# --------------------------------------------------------------------------- the run


@dataclass
class Results:
    """Phases by (configuration, concurrency), one per repeat."""

    phases: dict[tuple[str, int | str], list[Phase]] = field(default_factory=dict)
    loads: list[tuple[float, float]] = field(default_factory=list)

    def add(self, name: str, concurrency: int | str, phase: Phase) -> None:
        self.phases.setdefault((name, concurrency), []).append(phase)


def requests_for(concurrency: int, args: argparse.Namespace) -> int:
    return args.requests_single if concurrency == 1 else args.requests


async def one_repeat(
    results: Results,
    apps: list[Server],
    others: list[Server],
    model: InProcess,
    images: DistinctImages,
    args: argparse.Namespace,
    console: Console,
) -> None:
    for concurrency in args.concurrency:
        count = requests_for(concurrency, args)
        batch = images.take(count)  # every configuration sees the same pixels; the app sees new bytes
        with console.status(f"in-process, {concurrency} in flight"):
            model.measure(results, batch, concurrency, args.max_seconds)
        for server in apps + others:
            fresh = images.take(count) if server.body != "mlflow" else batch
            fresh = fresh * FLOOR_REPEAT if server.label == FLOOR else fresh
            with console.status(f"{server.label}, {concurrency} in flight"):
                phase = await http_phase(
                    server.port,
                    [server.request(i) for i in fresh],
                    concurrency,
                    args.max_seconds,
                    server.cpu,
                    expect_miss=server.body != "mlflow",
                    redis_cpu=args.redis_cpu if server in apps else None,
                    loop_cpu=server.loop_cpu if server in apps else None,
                )
            phase.rss_mb = tree_rss_mb(server.process.pid)
            results.add(server.label, concurrency, phase)
            # Work a server finishes after its answers (a shadow's queue) must not land on the next one.
            await asyncio.sleep(args.settle_seconds)
            if server.label == FLOOR and concurrency == 1:
                # The floor again, busy on a worker thread for as long as the model took in process:
                # what handing the work off the event loop and back costs on this machine.
                hold_ms = limit_phases(results, 1)[-1].percentile(50)
                held = [
                    http_request(f"{CLASSIFY}?hold_ms={hold_ms:.3f}", image, "image/jpeg")
                    for image in images.take(count)
                ]
                phase = await http_phase(server.port, held, 1, args.max_seconds, server.cpu, expect_miss=False)
                phase.latencies = [latency - hold_ms / 1000 for latency in phase.latencies]
                results.add(FLOOR_HOLD, concurrency, phase)

    batches = [images.take(BATCH_SIZE) for _ in range(args.batches)]
    with console.status(f"in-process, batches of {BATCH_SIZE}"):
        results.add(
            IN_PROCESS,
            f"batch {BATCH_SIZE}",
            model.batches([i for b in batches for i in b], BATCH_SIZE, args.max_seconds),
        )
    for server in apps:
        requests = []
        for b in batches:
            payload, content_type = multipart(
                [("files", f"{k}.jpg", data) for k, data in enumerate(images.take(len(b)))]
            )
            requests.append(http_request(BATCH, payload, content_type))
        with console.status(f"{server.label}, classify-batch of {BATCH_SIZE}"):
            results.add(
                server.label,
                f"batch {BATCH_SIZE}",
                await http_phase(
                    server.port,
                    requests,
                    1,
                    args.max_seconds,
                    server.cpu,
                    images_per_request=BATCH_SIZE,
                    redis_cpu=args.redis_cpu,
                    loop_cpu=server.loop_cpu,
                ),
            )
        results.add(server.label, "report hit", await report_reads(server, images, args))


async def report_reads(server: Server, images: DistinctImages, args: argparse.Namespace) -> Phase:
    """Creates one report, then reads it back ``--report-reads`` times, one in flight."""
    payload, content_type = multipart([("file", "car.jpg", images.take(1)[0])])
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    status, body = await exchange(reader, writer, http_request(REPORT, payload, content_type))
    writer.close()
    if status != 201:
        return Phase([], 1.0, 0.0, failures=1, first_error=f"create: {status} {body[:200]!r}")
    vehicle_id = json.loads(body)["vehicle_id"]
    read = http_request(f"{REPORT}/{vehicle_id}", b"", "application/json", method="GET")
    return await http_phase(
        server.port,
        [read] * args.report_reads,
        1,
        args.max_seconds,
        server.cpu,
        expect_miss=False,
        redis_cpu=args.redis_cpu,
        loop_cpu=server.loop_cpu,
    )


# --------------------------------------------------------------------------- the table


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "-"
    middle = fmt.format(statistics.median(values))
    return middle if len(values) == 1 else f"{middle} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def limit_phases(results: Results, concurrency: int) -> list[Phase]:
    """Per repeat, the fastest in-process way at this concurrency (the lowest p50 at 1 in flight)."""
    ways = [phases for (name, c), phases in results.phases.items() if name.startswith(IN_PROCESS) and c == concurrency]
    if concurrency == 1:
        return [min(repeat, key=lambda p: p.percentile(50)) for repeat in zip(*ways)]
    return [max(repeat, key=lambda p: p.images_per_second) for repeat in zip(*ways)]


def report(console: Console, results: Results, apps: list[Server], args: argparse.Namespace, caption: str) -> None:
    table = Table(title=f"Serving throughput and latency ({args.repeats} repeats: median (min-max))", caption=caption)
    for column in (
        "configuration",
        "in flight",
        "img/s",
        "p50 ms",
        "p99 ms",
        "p99/p50",
        "core-ms/img",
        "event loop core-ms/img",
        "cores busy",
        "machine idle %",
        "client core-ms/img",
        "redis core-ms/img",
        "RSS MB",
        "failed",
    ):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for (name, concurrency), phases in results.phases.items():
        failed = sum(p.failures for p in phases)
        hits = sum(p.cache_hits for p in phases)
        table.add_row(
            name,
            str(concurrency),
            spread([p.images_per_second for p in phases]),
            spread([p.percentile(50) for p in phases], "{:.2f}"),
            spread([p.percentile(99) for p in phases], "{:.2f}"),
            spread([p.percentile(99) / p.percentile(50) for p in phases], "{:.2f}"),
            spread([p.core_ms_per_image for p in phases], "{:.2f}"),
            spread([p.loop_ms_per_image for p in phases], "{:.2f}"),
            spread([p.cores_busy for p in phases], "{:.2f}"),
            spread([100 * p.idle for p in phases], "{:.0f}"),
            spread([p.client_ms_per_image for p in phases], "{:.2f}"),
            spread([p.redis_ms_per_image for p in phases], "{:.2f}"),
            spread([p.rss_mb for p in phases], "{:.0f}"),
            f"{failed}" + (f" +{hits} hits" if hits else ""),
        )
    console.print(table)
    for phases in results.phases.values():
        for phase in phases:
            if phase.first_error:
                console.print(f"[red]first failure:[/red] {phase.first_error}")
                break

    targets = Table(title="Targets (ratios within each repeat: median (min-max))")
    targets.add_column("target")
    targets.add_column("goal", justify="right")
    for server in apps:
        targets.add_column(server.label, justify="right")
    rows = target_rows(results, args)
    for name, goal, check, per_app in rows:
        cells = []
        for server in apps:
            values = per_app(server.label)
            holds = bool(values) and check(statistics.median(values))
            cells.append(f"{spread(values, '{:.2f}')} {'[green]yes[/green]' if holds else '[red]no[/red]'}")
        targets.add_row(name, goal, *cells)
    console.print(targets)


def target_rows(results: Results, args: argparse.Namespace) -> list:
    p = results.phases
    rows = []

    def per_repeat(label: str, key: int | str, fn: Callable[[Phase, int], float]) -> list[float]:
        return [fn(phase, i) for i, phase in enumerate(p.get((label, key), []))]

    if 8 in args.concurrency:
        limit8 = limit_phases(results, 8)
        rows.append(
            (
                "c=8: throughput / in-process limit",
                ">= 0.85",
                lambda v: v >= 0.85,
                lambda label: per_repeat(label, 8, lambda ph, i: ph.images_per_second / limit8[i].images_per_second),
            )
        )
        if (FLOOR, 8) in p:
            rows.append(
                (
                    "c=8: in-process limit plus the HTTP floor's CPU per request / limit (info: ceiling of "
                    "the row above)",
                    "",
                    lambda v: True,
                    lambda label: per_repeat(label, 8, lambda ph, i: with_floor(limit8[i], p[(FLOOR, 8)][i])),
                )
            )
        if (MLFLOW, 8) in p:
            rows.append(
                (
                    "c=8: throughput / mlflow serve",
                    ">= 1.5",
                    lambda v: v >= 1.5,
                    lambda label: per_repeat(
                        label, 8, lambda ph, i: ph.images_per_second / p[(MLFLOW, 8)][i].images_per_second
                    ),
                )
            )
            rows.append(
                (
                    "c=8: in-process limit / mlflow serve (info: ceiling of the row above)",
                    "",
                    lambda v: True,
                    lambda label: per_repeat(
                        label, 8, lambda ph, i: limit8[i].images_per_second / p[(MLFLOW, 8)][i].images_per_second
                    ),
                )
            )
        rows.append(
            (
                "c=8: p99 / p50",
                "<= 2",
                lambda v: v <= 2,
                lambda label: per_repeat(label, 8, lambda ph, i: ph.percentile(99) / ph.percentile(50)),
            )
        )
    if 1 in args.concurrency:
        limit1 = limit_phases(results, 1)
        rows.append(
            (
                "c=1: p50 - in-process p50 (ms)",
                "<= 2",
                lambda v: v <= 2,
                lambda label: per_repeat(label, 1, lambda ph, i: ph.percentile(50) - limit1[i].percentile(50)),
            )
        )
        if (FLOOR, 1) in p:
            rows.append(
                (
                    "c=1: HTTP floor p50 (ms) (info: what any request adds, round trip included)",
                    "",
                    lambda v: True,
                    lambda label: per_repeat(label, 1, lambda ph, i: p[(FLOOR, 1)][i].percentile(50)),
                )
            )
            rows.append(
                (
                    "c=1: the same with the model's time spent on a worker thread, beyond that time (ms) "
                    "(info: the least an HTTP service that keeps inference off its event loop adds)",
                    "",
                    lambda v: True,
                    lambda label: per_repeat(label, 1, lambda ph, i: p[(FLOOR_HOLD, 1)][i].percentile(50)),
                )
            )
        rows.append(
            (
                f"batch of {BATCH_SIZE}: per image / single p50",
                "<= 0.8",
                lambda v: v <= 0.8,
                lambda label: per_repeat(
                    label,
                    f"batch {BATCH_SIZE}",
                    lambda ph, i: ph.percentile(50) / BATCH_SIZE / p[(label, 1)][i].percentile(50),
                ),
            )
        )
        in_process_batch = p.get((IN_PROCESS, f"batch {BATCH_SIZE}"), [])
        rows.append(
            (
                f"batch of {BATCH_SIZE} in process: per image / in-process single p50 (info: what batching "
                "saves the model itself)",
                "",
                lambda v: True,
                lambda label: [
                    b.percentile(50) / BATCH_SIZE / limit1[i].percentile(50) for i, b in enumerate(in_process_batch)
                ],
            )
        )
    rows.append(
        (
            "report read, hit: p50 (ms)",
            "<= 3",
            lambda v: v <= 3,
            lambda label: per_repeat(label, "report hit", lambda ph, i: ph.percentile(50)),
        )
    )
    if 32 in args.concurrency and (MLFLOW, 32) in p:
        rows.append(
            (
                "c=32: throughput / mlflow serve (info)",
                "",
                lambda v: True,
                lambda label: per_repeat(
                    label, 32, lambda ph, i: ph.images_per_second / p[(MLFLOW, 32)][i].images_per_second
                ),
            )
        )
    return rows


def with_floor(limit: Phase, floor: Phase) -> float:
    """The share of the in-process limit left if every image also cost the HTTP floor's CPU per
    request: the most a Python service on this stack could reach with both cores busy."""
    cores = len(os.sched_getaffinity(0))
    floor_seconds = floor.cpu_seconds / max(len(floor.latencies), 1)
    return 1 / (1 + limit.images_per_second * floor_seconds / cores)


# --------------------------------------------------------------------------- main


def parse_app(spec: str) -> tuple[str, str, dict[str, str]]:
    """``label=body[:KEY=VALUE,...]`` -> (label, body, extra environment)."""
    label, _, rest = spec.partition("=")
    body, _, env = rest.partition(":")
    if body not in ("multipart", "raw"):
        raise argparse.ArgumentTypeError(f"body must be multipart or raw, got {body!r} in {spec!r}")
    extra = dict(item.split("=", 1) for item in env.split(",") if item)
    return f"app {label}", body, extra


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="registry to serve from; default: train a tiny champion in a temp dir")
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--alias", default="champion")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[1, 8, 32],
        help="comma-separated requests in flight (default 1,8,32)",
    )
    parser.add_argument("--requests", type=int, default=320, help="requests per phase above 1 in flight")
    parser.add_argument("--requests-single", type=int, default=120, help="requests per phase at 1 in flight")
    parser.add_argument("--batches", type=int, default=4, help=f"classify-batch requests of {BATCH_SIZE} per repeat")
    parser.add_argument("--report-reads", type=int, default=200, help="report reads per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every measurement")
    parser.add_argument(
        "--app",
        dest="apps",
        action="append",
        type=parse_app,
        metavar="LABEL=BODY[:K=V,...]",
        help="an app configuration to measure (repeatable): body multipart or raw, plus "
        "environment, e.g. 'one-thread=raw:INFERENCE_THREADS=1' (CODE=<checkout> runs another "
        "checkout's app); default: the app as configured with a raw and a multipart "
        "body, and raw with INFERENCE_THREADS=1",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="skip `mlflow models serve`")
    parser.add_argument(
        "--image-size",
        type=lambda s: tuple(int(v) for v in s.split("x")),
        default=(320, 240),
        help="WxH of the JPEGs sent (default 320x240)",
    )
    parser.add_argument("--redis-url", help="back the app with this Redis (keys under a throwaway prefix)")
    parser.add_argument("--max-seconds", type=float, default=60, help="stop any one phase after this long")
    parser.add_argument("--quick", action="store_true", help="one repeat, a third of the requests")
    parser.add_argument(
        "--settle-seconds", type=float, default=0.0, help="pause after each server's phase (shadow work drains)"
    )
    args = parser.parse_args(argv)
    args.redis_prefixes = []
    args.redis_cpu = redis_cpu_reader(args.redis_url) if args.redis_url else None
    # The default layout with both bodies, and the one-inference-thread layout (all cores per
    # backbone call), so every run shows the layout choice of docs/benchmarks.md again.
    args.apps = args.apps or [
        parse_app("raw=raw"),
        parse_app("multipart=multipart"),
        parse_app("raw-1-thread=raw:INFERENCE_THREADS=1"),
    ]
    if args.quick:
        args.repeats, args.requests, args.requests_single = 1, args.requests // 3, args.requests_single // 3
        args.batches, args.report_reads = 2, args.report_reads // 2
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console.width = 320  # a piped table keeps one line per row
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers: list[Server] = []
    try:
        tracking_uri = args.tracking_uri or build_tiny_registry(workdir / "registry", console)
        version = resolve_version(tracking_uri, args.model_name, args.alias)
        model_uri = f"models:/{args.model_name}/{version}"
        with console.status("Starting the servers and loading the model"):
            apps = [start_app(label, body, extra, tracking_uri, workdir, args) for label, body, extra in args.apps]
            others = [start_floor(tracking_uri, workdir, args)]
            others += [] if args.no_mlflow else [start_mlflow(model_uri, tracking_uri, workdir, args)]
            servers = apps + others
            images = DistinctImages(base_images(workdir / "images", 84, args.image_size))
            model = InProcess(load_champion(tracking_uri, model_uri), load_champion(tracking_uri, model_uri, 1))
            for server in servers:
                server.wait_ready("/ping" if server.label == MLFLOW else "/ready", 600)
            for server, (_, _, extra) in zip(apps, args.apps):
                if extra.get("SHADOW_ALIAS"):
                    server.wait_shadow(600)
        asyncio.run(warm_up(servers, images))
        results = Results()
        for repeat in range(args.repeats):
            load = os.getloadavg()[0]
            asyncio.run(one_repeat(results, apps, others, model, images, args, console))
            results.loads.append((load, os.getloadavg()[0]))
            console.print(f"repeat {repeat + 1}/{args.repeats} done; 1-min load {load:.1f} -> {os.getloadavg()[0]:.1f}")
        loads = ", ".join(f"{a:.1f}->{b:.1f}" for a, b in results.loads)
        caption = (
            f"model version {version}; {len(os.sched_getaffinity(0))} usable cores; one uvicorn worker per server; "
            f"{args.image_size[0]}x{args.image_size[1]} JPEGs, distinct bytes per request; "
            f"1-min load per repeat: {loads}"
        )
        report(console, results, apps, args, caption)
    finally:
        for server in servers:
            server.stop()
        if args.redis_url:
            delete_keys(args.redis_url, args.redis_prefixes)
        shutil.rmtree(workdir, ignore_errors=True)


def redis_cpu_reader(redis_url: str) -> Callable[[], float]:
    """A reader of redis-server's own CPU seconds (user + system), from INFO."""
    from redis import Redis

    client = Redis.from_url(redis_url)

    def read() -> float:
        info = client.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    return read


def delete_keys(redis_url: str, prefixes: list[str]) -> None:
    from redis import Redis

    client = Redis.from_url(redis_url)
    for prefix in prefixes:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    client.close()


async def warm_up(servers: list[Server], images: DistinctImages) -> None:
    """A few requests each, so first-call costs (connections, lazy imports) are not measured."""
    for server in servers:
        await http_phase(server.port, [server.request(i) for i in images.take(8)], 2, 60, server.cpu)


if __name__ == "__main__":
    main()
