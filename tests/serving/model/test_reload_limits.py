"""Reloads are bounded and leave nothing behind: no held lock, no download folder, no sys.path entry."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from mlflow import MlflowClient
from serving_helpers import assert_error

from serving.app import create_app
from serving.model.service import ModelService
from serving.model.source import ModelSource

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

NAME = "vehicle-classifier"


def download_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("model-v*"))


async def test_a_load_over_its_time_limit_fails_and_frees_the_refresh_lock(registry_uri):
    service = ModelService(ModelSource(registry_uri, NAME, "champion"), load_timeout=0.001)
    try:
        first = await service.refresh()
        assert first.outcome == "failed" and "did not load within" in first.detail
        assert not service._refresh_lock.locked()
        again = await service.refresh()  # not stuck behind the slow load
        assert again.outcome == "skipped"
        assert service.problem is not None and "did not load within" in service.problem
    finally:
        await service.close()


async def test_admin_reload_answers_within_its_limit(make_settings, registry_uri):
    app = create_app(make_settings(reload_timeout_seconds=0.001, poll_interval_seconds=3600))
    async with AsyncTestClient(app) as client:
        MlflowClient(registry_uri).set_registered_model_alias(NAME, "champion", "2")
        answer = await client.post("/admin/reload")
    assert_error(answer, 504, "reload_pending")


async def test_reloads_leave_no_download_folder_and_no_sys_path_entry(registry_uri, tmp_path, monkeypatch):
    # Downloads go to a folder of this test's own: /tmp also holds the folders of other
    # processes' loads, and of loads an earlier test here timed out on, still finishing.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before_folders, before_path = download_folders(), list(sys.path)
    service = ModelService(ModelSource(registry_uri, NAME, "champion"))
    client = MlflowClient(registry_uri)
    try:
        outcomes = [(await service.refresh()).outcome]
        for version in ("2", "1", "2"):
            client.set_registered_model_alias(NAME, "champion", version)
            outcomes.append((await service.refresh()).outcome)
        served = service.require().version
    finally:
        await service.close()
    assert outcomes == ["loaded"] * 4 and served == "2"
    # Other tests' loads may still be finishing in this process, so compare what was added.
    assert not [entry for entry in sys.path if entry not in before_path], "no load left a sys.path entry"
    assert not download_folders() - before_folders, "no download folder outlives its load"
