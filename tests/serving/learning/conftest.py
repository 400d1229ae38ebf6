"""Apps with the learning loop on: the session's small model, real Redis, a SQLite label store in tmp."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from litestar import Litestar

from serving.app import create_app
from serving.model.service import ModelService
from serving.settings import ServingSettings


@pytest.fixture
def learning_app(make_settings, small_model) -> Callable[..., tuple[Litestar, ServingSettings]]:
    """``learning_app(**settings)``: an app serving version 1 and the settings it was built with."""

    def build(**overrides) -> tuple[Litestar, ServingSettings]:
        settings = make_settings(**overrides)
        return create_app(settings, model_service=ModelService(None, small_model)), settings

    return build
