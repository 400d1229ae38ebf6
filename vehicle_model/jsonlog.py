"""The one JSON log line format of every process (training flows and serving).

One object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, any
``extra=`` fields, and ``exception`` when there is one. Built by python-json-logger.
"""

from __future__ import annotations

from pythonjsonlogger.json import JsonFormatter


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        timestamp="time",
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
    )
