"""Every process logs the same JSON line shape (flows' run logs here; serving uses the same formatter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.logs import file_logger

pytestmark = pytest.mark.unit


def test_flow_run_log_lines_are_one_json_object_each(tmp_path: Path):
    logger = file_logger("jsonlog-test", tmp_path)
    logger.info("candidate trained", extra={"candidate": "knn", "val.macro_f1": 0.5})
    try:
        raise ValueError("bad input")
    except ValueError:
        logger.exception("candidate failed")
    for handler in logger.handlers:
        handler.flush()

    first, second = [json.loads(line) for line in (tmp_path / "jsonlog-test.log").read_text().splitlines()]

    assert set(first) == {"time", "level", "logger", "message", "candidate", "val.macro_f1"}
    assert (first["level"], first["logger"], first["message"]) == ("INFO", "vehicles.jsonlog-test", "candidate trained")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: bad input" in second["exception"]
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
