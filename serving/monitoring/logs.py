"""JSON logs to stdout and a rotating file, and one access-log line per request with its id.

Records go through a queue so a slow disk never blocks the event loop. Logging is set up by
``configure_logging`` from the app's lifespan, never at import.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from serving.http.request_ids import request_id

# Attributes every LogRecord has; anything else passed with ``extra=`` becomes a JSON field.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_dir: Path, level: str = "INFO") -> logging.handlers.QueueListener:
    """Routes the ``serving`` logger to stdout and ``log_dir/api.log`` (rotating) as JSON.

    Replaces handlers a previous call installed, so building several apps in one process
    (tests) does not duplicate lines. Returns the started listener; stop it on shutdown.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = JsonFormatter()
    stdout = logging.StreamHandler(sys.stdout)
    rotating = logging.handlers.RotatingFileHandler(
        log_dir / "api.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
    )
    for handler in (stdout, rotating):
        handler.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, stdout, rotating, respect_handler_level=False)
    root = logging.getLogger("serving")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(level.upper())
    root.propagate = False
    listener.start()
    return listener


def stop_logging(listener: logging.handlers.QueueListener) -> None:
    """Flushes queued records and closes the files."""
    listener.stop()
    for handler in listener.handlers:
        handler.close()


class AccessLogMiddleware(ASGIMiddleware):
    """One log line per request: id, method, route, status, duration, region, client.

    Never logs bodies: uploads are images that may be sensitive and are large.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self.logger = logging.getLogger("serving.access")

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, capture)
        finally:
            client = scope.get("client")
            self.logger.info(
                "%s %s %s",
                scope.get("method"),
                scope.get("path"),
                status["code"],
                extra={
                    "request_id": request_id(scope),
                    "method": scope.get("method"),
                    "route": scope.get("path_template") or scope.get("path"),
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "region": scope["state"].get("region"),
                    "client": client[0] if client else None,
                },
            )
