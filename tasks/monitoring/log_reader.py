"""The monitoring side of the prediction log: read records from the Redis stream serving
appends to, remember how far the last run read, publish each region's drift status.

Stream entry ids are ``<milliseconds>-<sequence>``, so a time window is an id range and the
checkpoint is the last id read: the next run starts just after it and sees every record once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis import Redis

from vehicle_model.records import RECORD_FIELD, as_text, decode, drift_status_key, log_key

DEFAULT_WINDOW_MINUTES = 60  # what a first run (no checkpoint yet) reads
PAGE = 1000


@dataclass(frozen=True)
class LogWindow:
    """Records read from the log and the id range they span."""

    records: list[dict]
    start: str
    last_id: str | None


def checkpoint_key(prefix: str) -> str:
    return f"{prefix}:monitoring:checkpoint"


def read_log(redis: Redis, prefix: str, now: float, window_minutes: float | None, max_records: int) -> LogWindow:
    """Records up to ``now``: from ``window_minutes`` ago, or else from just after the checkpoint.

    At most ``max_records`` are read, oldest first; the rest are left for the next run.
    """
    start = _start(redis, prefix, now, window_minutes)
    end = str(int(now * 1000))
    records: list[dict] = []
    last_id: str | None = None
    cursor = start
    while len(records) < max_records:
        entries = redis.xrange(log_key(prefix), min=cursor, max=end, count=min(PAGE, max_records - len(records)))
        for entry_id, fields in entries:
            last_id = as_text(entry_id)
            raw = fields.get(RECORD_FIELD.encode()) or fields.get(RECORD_FIELD)
            if raw is not None:
                records.append(decode(raw))
        if len(entries) < PAGE:
            break
        cursor = f"({last_id}"
    return LogWindow(records, start, last_id)


def save_checkpoint(redis: Redis, prefix: str, last_id: str) -> None:
    redis.set(checkpoint_key(prefix), last_id)


def publish_status(redis: Redis, prefix: str, statuses: dict[str, dict]) -> None:
    """Writes each examined region's latest status where serving's stats endpoint reads it."""
    if statuses:
        redis.hset(
            drift_status_key(prefix), mapping={region: json.dumps(status) for region, status in statuses.items()}
        )


def _start(redis: Redis, prefix: str, now: float, window_minutes: float | None) -> str:
    if window_minutes is None:
        checkpoint = redis.get(checkpoint_key(prefix))
        if checkpoint:
            return f"({as_text(checkpoint)}"
        window_minutes = DEFAULT_WINDOW_MINUTES
    return str(int((now - window_minutes * 60) * 1000))
