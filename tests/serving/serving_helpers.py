"""Helpers shared by the serving tests (imported as a module: tests/serving is on sys.path)."""

from __future__ import annotations

import io
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.exceptions import RedisError

from vehicle_model.decisions import DecisionPolicy

CLASSIFY = "/api/vehicle/classify"
BATCH = "/api/vehicle/classify-batch"
REPORT = "/api/vehicle/report"


def unique_png(seed: int) -> bytes:
    """A small PNG no other call returns (so it is never a cache hit)."""
    image = Image.new("RGB", (48, 32), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    image.putpixel((seed % 48, (seed // 48) % 32), (255 - seed % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def greyscale_png(image_bytes: bytes) -> bytes:
    """The image as a greyscale frame (what an infrared night camera sends), as PNG."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes)).convert("L").save(buffer, format="PNG")
    return buffer.getvalue()


def policy_at(threshold: float, attributes: Iterable[str] = ("vehicle_type", "color")) -> DecisionPolicy:
    """A decision policy with one threshold for every attribute (0: always confident, > 1: never)."""
    return DecisionPolicy(
        thresholds=dict.fromkeys(attributes, threshold), target_precision=0.98, colour_attributes=("color",)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayRedis:
    """A private ``redis-server`` on a free loopback port that tests may stop and restart."""

    def __init__(self, port: int, data_dir: Path | None = None) -> None:
        self.port = port
        self.data_dir = data_dir  # with a folder, an append-only file keeps data across restarts
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self._persistence()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url, socket_connect_timeout=0.2)
        for _ in range(200):
            try:
                if client.ping():
                    break
            except RedisError:
                time.sleep(0.025)
        else:
            raise RuntimeError(f"redis-server on port {self.port} did not start")
        client.close()

    def _persistence(self) -> list[str]:
        if self.data_dir is None:
            return ["--appendonly", "no"]
        return ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.data_dir)]

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def client(self) -> Redis:
        return Redis.from_url(self.url)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing ever answers (a hung Redis)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)


class LossyProxy:
    """A loopback TCP proxy in front of Redis that can swallow Redis' replies.

    With ``drop_replies`` set, requests still reach Redis (and are applied) but the client
    never hears back: the "read timeout after Redis applied it" failure, on demand.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.drop_replies = False
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._spawn(self._pipe, client, upstream, False)
            self._spawn(self._pipe, upstream, client, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        source.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if not (replies and self.drop_replies):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        for thread in self._threads:
            thread.join(timeout=2)


def metric(text: str, sample_name: str, /, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def assert_error(response, status: int, code: str | None = None) -> dict:
    """Checks the one error shape and returns its ``error`` object."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert error["code"] == code, error
    return error


@contextmanager
def running_server(app, **options) -> Iterator[str]:
    """Serves ``app`` with uvicorn on a free loopback port in a thread; yields its base URL.

    Litestar's test clients hand requests to the app one at a time, so tests that need
    requests truly in flight together go through a real server. ``options`` are more
    ``uvicorn.Config`` arguments (host and port are always loopback and free).
    """
    options = {**options, "host": "127.0.0.1", "port": free_port()}
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
