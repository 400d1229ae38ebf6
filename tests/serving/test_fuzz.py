"""Schemathesis against the live app's own OpenAPI schema: every operation, every phase.

Bounded (examples per operation, fixed seed, one worker) so it fits in ``make test``. Any
server error, undocumented status code or content type, or body that violates its schema
fails the test, with schemathesis' report (and its reproduction commands) in the message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving_helpers import CLASSIFY, running_server, unique_png

from serving.app import create_app
from serving.model.service import ModelService

pytestmark = [pytest.mark.serving, pytest.mark.fuzz]

MAX_EXAMPLES = 12
SEED = 20261128
# Statuses a request that matches the schema may still get: the schema cannot say "an image"
# (415/422), which ids exist (404), or what is already taken (409).
POSITIVE_STATUSES = ["2xx", "400", "401", "403", "404", "409", "413", "415", "422"]


def _schemathesis() -> str:
    command = Path(sys.executable).with_name("schemathesis")
    return str(command) if command.exists() else shutil.which("schemathesis") or "schemathesis"


def test_live_app_conforms_to_its_schema(make_settings, small_model, tmp_path: Path):
    config = tmp_path / "schemathesis.toml"
    app = create_app(make_settings(review_uniform_share=1.0), model_service=ModelService(None, small_model))
    with running_server(app) as base_url:
        config.write_text(
            f"[checks.positive_data_acceptance]\nexpected-statuses = {POSITIVE_STATUSES!r}\n".replace("'", '"')
            + _answered_ids(base_url)
        )
        result = subprocess.run(
            [
                _schemathesis(),
                "--config-file",
                str(config),
                "run",
                f"{base_url}/docs/openapi.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--request-timeout",
                "30",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]


def _answered_ids(base_url: str) -> str:
    """Config that feeds real answers' ids to feedback and review, so those reach past their 404."""
    ids = [
        httpx.post(f"{base_url}{CLASSIFY}", content=unique_png(seed), headers={"Content-Type": "image/png"}).json()[
            "request_id"
        ]
        for seed in range(4)
    ]
    return (
        f"\n[dictionaries.answers]\nvalues = {json.dumps(ids)}\n"
        '\n[[operations]]\ninclude-name = "POST /api/vehicle/feedback"\n'
        'parameters = { "body.request_id" = { dictionary = "answers", probability = 0.7 } }\n'
        '\n[[operations]]\ninclude-path = ["/api/labels/{item_id}", "/api/labels/{item_id}/image"]\n'
        'parameters = { "path.item_id" = { dictionary = "answers", probability = 0.7 } }\n'
    )
