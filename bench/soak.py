"""Soak test: one serving replica with Redis under steady load, watching for leaks.

Starts ``python -m serving`` on a free 127.0.0.1 port (a tiny model built here unless
``--tracking-uri`` is given) and keeps ``--concurrency`` clients busy for ``--minutes`` with
a mix of classify, classify-batch, report create and report read, every image distinct (no
cache hits). Every ``--sample-seconds`` it reads the server's RSS, open file descriptors and
threads from /proc. Passes (exit 0) with zero failed requests, RSS growth after warm-up under
``--max-rss-growth``, and no fd or thread growth. Nothing leaves the loopback interface.

    make soak                                   # 5 minutes, 16 in flight, Redis from ensure_redis.sh
    .venv/bin/python bench/soak.py --minutes 1 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich.console import Console

HERE = Path(__file__).resolve().parent


def _bench_serving():
    """bench/serving.py's helpers (registry, images, server start), loaded by path."""
    spec = importlib.util.spec_from_file_location("bench_serving", HERE / "serving.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    fds: int
    threads: int
    fd_kinds: Counter = field(default_factory=Counter)
    thread_names: Counter = field(default_factory=Counter)


@dataclass
class Load:
    ok: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)


def _socket_peers(pid: int, server_port: int, redis_port: int) -> dict[str, str]:
    """Socket inode -> who is on the other end (client, redis, listen, other), from /proc/<pid>/net."""
    peers = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else ():
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == 0:
                kind = "listen"
            elif local_port == server_port:
                kind = "client"
            elif remote_port == redis_port:
                kind = "redis"
            else:
                kind = f"tcp:{remote_port}"
            peers[fields[9]] = kind
    return peers


def _fd_kinds(pid: int, server_port: int, redis_port: int) -> Counter:
    """What the open fds are: client/redis sockets, pipes, files, anon inodes (epoll, eventfd)."""
    peers, kinds = _socket_peers(pid, server_port, redis_port), Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed between listdir and readlink
            continue
        if target.startswith("socket:["):
            kinds[f"socket:{peers.get(target[8:-1], 'unix')}"] += 1
        elif target.startswith(("pipe:", "anon_inode:")):
            kinds[target.split(":[")[0]] += 1
        else:
            kinds["file"] += 1
    return kinds


def _thread_names(pid: int) -> Counter:
    names = Counter()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
        except OSError:
            continue
        names[name.rstrip("0123456789_-") or name] += 1
    return names


def sample(pid: int, started: float, ports: tuple[int, int]) -> Sample:
    """RSS, fds and threads of the server, with what the fds and threads are."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kinds = _fd_kinds(pid, *ports)
    return Sample(
        seconds=time.monotonic() - started,
        rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        fds=sum(kinds.values()),
        threads=int(status["Threads"]),
        fd_kinds=kinds,
        thread_names=_thread_names(pid),
    )


async def client_loop(number: int, client: httpx.AsyncClient, deadline: float, load: Load, images) -> None:
    """One client: classify, batch of 4, report create, report read, repeated until the deadline."""

    def image() -> bytes:
        return images.take(1)[0]

    async def call(kind: str, request) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await request
        except httpx.HTTPError as exc:
            load.failed[kind] += 1
            load.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        if response.status_code >= 300:
            load.failed[kind] += 1
            load.errors.append(f"{kind}: {response.status_code} {response.text[:200]}")
            return None
        load.ok[kind] += 1
        load.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        return response

    while time.monotonic() < deadline:
        files = {"file": ("car.jpg", image(), "image/jpeg")}
        await call("classify", client.post("/api/vehicle/classify", files=files))
        batch = [("files", (f"{i}.jpg", image(), "image/jpeg")) for i in range(4)]
        await call("batch", client.post("/api/vehicle/classify-batch", files=batch))
        vehicle_id = f"soak-{uuid.uuid4().hex}"
        created = await call(
            "report create",
            client.post(
                "/api/vehicle/report",
                files={"file": ("car.jpg", image(), "image/jpeg")},
                data={"vehicle_id": vehicle_id},
            ),
        )
        if created is not None:
            await call("report read", client.get(f"/api/vehicle/report/{vehicle_id}"))


async def run_load(
    base_url: str, pid: int, ports: tuple[int, int], args: argparse.Namespace, images
) -> tuple[Load, list[Sample]]:
    load, samples = Load(), []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    limits = httpx.Limits(max_connections=args.concurrency + 4)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            samples.append(sample(pid, started, ports))
            await asyncio.sleep(args.sample_seconds)
        samples.append(sample(pid, started, ports))

    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        await asyncio.gather(
            sampler(), *(client_loop(n, client, deadline, load, images) for n in range(args.concurrency))
        )
    return load, samples


def verdict(load: Load, samples: list[Sample], args: argparse.Namespace) -> tuple[bool, list[str]]:
    """Compares the first and last thirds after warm-up; returns (passed, lines)."""
    steady = [s for s in samples if s.seconds >= args.warmup_seconds]
    third = max(1, len(steady) // 3)
    early, late = steady[:third], steady[-third:]
    rss_early = statistics.median(s.rss_mb for s in early)
    rss_late = statistics.median(s.rss_mb for s in late)
    growth = rss_late / rss_early - 1
    fds = (max(s.fds for s in early), max(s.fds for s in late))
    threads = (max(s.threads for s in early), max(s.threads for s in late))
    failed = sum(load.failed.values())
    checks = [
        (failed == 0, f"failed requests: {failed} of {failed + sum(load.ok.values())}"),
        (
            growth < args.max_rss_growth,
            f"RSS after warm-up: {rss_early:.1f} MB -> {rss_late:.1f} MB "
            f"({growth:+.1%}, limit {args.max_rss_growth:.0%})",
        ),
        (fds[1] <= fds[0], f"open fds (max, first vs last third): {fds[0]} -> {fds[1]}"),
        (threads[1] <= threads[0], f"threads (max, first vs last third): {threads[0]} -> {threads[1]}"),
    ]
    return all(ok for ok, _ in checks), [f"{'PASS' if ok else 'FAIL'}  {line}" for ok, line in checks]


def print_report(load: Load, samples: list[Sample], lines: list[str], args: argparse.Namespace, ready: dict) -> None:
    minutes = samples[-1].seconds / 60 if samples else 0
    print(
        f"\nsoak: {minutes:.1f} min, {args.concurrency} clients, model v{ready['model_version']}, "
        f"redis {ready['redis']}, {os.cpu_count()} cpu(s), warm-up {args.warmup_seconds:.0f} s"
    )
    header = f"{'operation':<16}{'ok':>8}{'failed':>8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + "\n" + "-" * len(header))
    for kind in ("classify", "batch", "report create", "report read"):
        latencies = sorted(load.latencies.get(kind, []))
        p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
        p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
        rate = load.ok[kind] / (minutes * 60) if minutes else 0
        print(f"{kind:<16}{load.ok[kind]:>8}{load.failed[kind]:>8}{rate:>8.1f}{p50:>9.1f}{p99:>9.1f}")
    print(f"\n{'t (s)':>7}{'RSS MB':>9}{'fds':>6}{'threads':>9}")
    for s in samples[:: max(1, len(samples) // 12)] + samples[-1:]:
        print(f"{s.seconds:>7.0f}{s.rss_mb:>9.1f}{s.fds:>6}{s.threads:>9}")
    steady = [s for s in samples if s.seconds >= args.warmup_seconds] or samples
    for label, picked in (("after warm-up", steady[0]), ("at the end", samples[-1])):
        print(f"\n{label} (t={picked.seconds:.0f} s):")
        print("  fds:     " + ", ".join(f"{k} {v}" for k, v in sorted(picked.fd_kinds.items())))
        print("  threads: " + ", ".join(f"{k} {v}" for k, v in sorted(picked.thread_names.items())))
    print()
    for line in lines:
        print(line)
    for error in load.errors[:10]:
        print(f"  {error}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="Redis for the replica (required)")
    parser.add_argument("--tracking-uri", help="registry to serve from; default: build a tiny model in a temp dir")
    args = parser.parse_args()
    if not args.redis_url:
        parser.error("--redis-url (or REDIS_URL) is required: the soak runs one replica with Redis")
    if args.warmup_seconds >= args.minutes * 60:
        parser.error("--warmup-seconds must be shorter than the run")
    return args


def main() -> int:
    args = parse_args()
    bench = _bench_serving()
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    server = None
    server_args = argparse.Namespace(
        model_name=bench.MODEL_NAME, alias="champion", redis_url=args.redis_url, redis_prefixes=[]
    )
    try:
        tracking_uri = args.tracking_uri or bench.build_tiny_registry(workdir / "registry", console)
        # The bench's defaults, but a poll that never moves the model: the soak watches one version.
        server = bench.start_app(
            "soak", "multipart", {"POLL_INTERVAL_SECONDS": "3600"}, tracking_uri, workdir, server_args
        )
        with console.status("Loading the model"):
            server.wait_ready("/ready", 600)
            images = bench.DistinctImages(bench.base_images(workdir / "images", 84, (320, 240)))
        ready = httpx.get(f"http://127.0.0.1:{server.port}/ready").json()
        ports = (server.port, urlsplit(args.redis_url).port or 6379)
        load, samples = asyncio.run(
            run_load(f"http://127.0.0.1:{server.port}", server.process.pid, ports, args, images)
        )
        passed, lines = verdict(load, samples, args)
        print_report(load, samples, lines, args, ready)
        return 0 if passed else 1
    finally:
        if server is not None:
            server.stop()
        bench.delete_keys(args.redis_url, server_args.redis_prefixes)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
