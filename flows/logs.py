"""JSON-lines run logs in rotating files beside Prefect's own run logs."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from vehicle_model.jsonlog import json_formatter


def file_logger(name: str, log_dir: Path, max_bytes: int = 5_000_000, backups: int = 5) -> logging.Logger:
    """A logger writing JSON lines to ``log_dir/<name>.log`` (rotating); idempotent per path."""
    logger = logging.getLogger(f"vehicles.{name}")
    path = (log_dir / f"{name}.log").resolve()
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(json_formatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the flow already logs to Prefect; this file is the JSON copy
    return logger
