"""Slow and aborted uploads over raw sockets against uvicorn: they never hold the inference pool.

Uploads are read on the event loop before anything reaches the inference pool; the body
deadline (408) and uvicorn's keep-alive limit bound how long such a connection lives at all.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from serving_helpers import CLASSIFY, metric, running_server, unique_png

from serving.__main__ import uvicorn_options
from serving.app import create_app
from serving.model.service import ModelService

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

SOCKET_TIMEOUT = 60.0  # generous: only a server that never answers reaches it
BOUNDARY = "slowclientboundary"


def classify_request(seed: int) -> tuple[bytes, bytes]:
    """Head and body of a well-formed multipart classify request, as raw HTTP/1.1 bytes."""
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="c.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + unique_png(seed)
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST {CLASSIFY} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def connect(base_url: str) -> socket.socket:
    address = urlsplit(base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=SOCKET_TIMEOUT)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of one response (Content-Length framed), read to the end."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Sends ``data`` one byte at a time, slowly, until told to stop or the server closes."""
    for byte in data:
        if stop.wait(0.3):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


async def test_slow_and_aborted_uploads_leave_the_inference_pool_free(make_settings, small_model):
    threads = 1
    settings = make_settings(inference_threads=threads, body_timeout_seconds=600)
    app = create_app(settings, model_service=ModelService(None, small_model, inference_threads=threads))
    stop = threading.Event()
    open_sockets: list[socket.socket] = []
    with running_server(app, timeout_keep_alive=settings.keep_alive_timeout_seconds) as base_url:
        try:
            # Headers sent, half the body, then nothing more (stalled) or a byte every 0.3 s that
            # never completes it.
            for seed in range(4):
                head, body = classify_request(seed)
                sock = connect(base_url)
                sock.sendall(head + body[: len(body) // 2])
                open_sockets.append(sock)
                if seed % 2:
                    threading.Thread(target=trickle, args=(sock, body[len(body) // 2 : -10], stop), daemon=True).start()
            # Headers and half the body, then the client hangs up.
            for seed in range(10, 14):
                head, body = classify_request(seed)
                with connect(base_url) as sock:
                    sock.sendall(head + body[: len(body) // 2])
            async with httpx.AsyncClient(base_url=base_url, timeout=SOCKET_TIMEOUT) as client:
                deadline = time.monotonic() + SOCKET_TIMEOUT
                while (
                    metric(
                        (await client.get("/metrics")).text, "vehicle_errors_total", status="400", code="upload_aborted"
                    )
                    < 4
                ):
                    assert time.monotonic() < deadline, "aborted uploads never ended"
                    await asyncio.sleep(0.05)
                # More unfinished uploads than inference threads are open now; a normal request:
                answered = await client.post(CLASSIFY, files={"file": ("ok.png", unique_png(99), "image/png")})
                metrics = (await client.get("/metrics")).text
            for sock in open_sockets:  # still waiting for their bodies: nobody answered or closed them
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)
        finally:
            stop.set()
            for sock in open_sockets:
                sock.close()
    assert answered.status_code == 200, answered.text
    assert answered.json()["model"]["version"] == "1"
    assert not re.search(r'^vehicle_errors_total\{[^}]*status="5', metrics, re.MULTILINE), "no 5xx answered"


async def test_a_body_late_past_its_deadline_gets_408_and_idle_connections_are_closed(make_settings, small_model):
    settings = make_settings(body_timeout_seconds=1.0, keep_alive_timeout_seconds=1)
    app = create_app(settings, model_service=ModelService(None, small_model, inference_threads=1))
    stop = threading.Event()
    with running_server(
        app, **{k: v for k, v in uvicorn_options(settings).items() if k not in ("host", "port")}
    ) as base_url:
        head, body = classify_request(1)
        stalled, trickling, idle = connect(base_url), connect(base_url), connect(base_url)
        try:
            stalled.sendall(head + body[:100])
            # A byte every 0.3 s keeps data flowing; the deadline is for the whole body.
            trickling.sendall(head)
            threading.Thread(target=trickle, args=(trickling, body, stop), daemon=True).start()
            late = [read_response(sock) for sock in (stalled, trickling)]
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            health_status, _, _ = read_response(idle)
            closed_when_idle = idle.recv(1)  # b"" once uvicorn drops the idle keep-alive connection
        finally:
            stop.set()
            for sock in (stalled, trickling, idle):
                sock.close()
    for status, headers, raw in late:
        assert status == 408
        error = json.loads(raw)["error"]
        assert error["code"] == "body_timeout" and error["status"] == 408
        assert "1 s" in error["message"] and error["request_id"] == headers["x-request-id"]
    assert health_status == 200
    assert closed_when_idle == b""
