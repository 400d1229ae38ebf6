"""Alias moves on a real MLflow registry, including a non-default MODEL_ALIAS."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from tasks.registry.versions import PREVIOUS, promote, rollback, version_for_alias

pytestmark = pytest.mark.flows

NAME = "vehicle-classifier"


@pytest.fixture
def three_versions(mlflow_store: str, tmp_path) -> MlflowClient:
    """Three registered versions of a trivial model (the registry only needs a model URI)."""
    client = MlflowClient()
    client.create_registered_model(NAME)
    # An explicit artifact location: the default (./mlruns) wrote into the checkout.
    experiment = mlflow.create_experiment("registry-test", artifact_location=str(tmp_path / "artifacts"))
    for _ in range(3):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_text("x", "model/placeholder.txt")
        client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id)
    return client


def _version(client: MlflowClient, alias: str) -> str | None:
    found = version_for_alias(client, NAME, alias)
    return None if found is None else str(found.version)


def test_promote_and_rollback_follow_a_custom_alias(three_versions: MlflowClient) -> None:
    client = three_versions
    assert promote(client, NAME, "1", champion="prod") is None
    assert promote(client, NAME, "3", champion="prod") == "1"
    assert (_version(client, "prod"), _version(client, PREVIOUS), _version(client, "champion")) == ("3", "1", None)

    assert rollback(client, NAME, "prod") == ("1", "3")
    assert (_version(client, "prod"), _version(client, PREVIOUS)) == ("1", "3")


def test_promoting_the_current_champion_changes_nothing(three_versions: MlflowClient) -> None:
    client = three_versions
    promote(client, NAME, "1")
    promote(client, NAME, "2")
    assert promote(client, NAME, "2") == "2"
    assert (_version(client, "champion"), _version(client, PREVIOUS)) == ("2", "1")


def test_rollback_without_previous_is_a_clear_error(three_versions: MlflowClient) -> None:
    promote(three_versions, NAME, "1")
    with pytest.raises(LookupError, match="no 'previous' version"):
        rollback(three_versions, NAME)


def test_rollback_never_leaves_champion_equal_to_previous(three_versions: MlflowClient) -> None:
    client = three_versions
    promote(client, NAME, "1")
    promote(client, NAME, "2")
    client.set_registered_model_alias(NAME, PREVIOUS, "2")  # a hand edit left previous == champion

    with pytest.raises(LookupError, match="nothing to roll back to"):
        rollback(client, NAME)
    assert (_version(client, "champion"), _version(client, PREVIOUS)) == ("2", "2")


def test_a_promotion_records_what_it_replaced(three_versions: MlflowClient) -> None:
    client = three_versions
    promote(client, NAME, "1")
    promote(client, NAME, "3")

    assert client.get_model_version(NAME, "3").tags["promotion.replaced"] == "1"
    assert client.get_model_version(NAME, "1").tags["promotion.replaced"] == ""
    rollback(client, NAME)
    assert client.get_model_version(NAME, "1").tags["promotion.replaced"] == "3"
