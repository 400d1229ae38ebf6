"""Reading the MLflow Model Registry: which version an alias points to, and loading it.

Only the loading side of MLflow is used. Every call is blocking; ``ModelService`` runs them
on its own thread so the event loop never waits on the registry.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vehicle_model.metadata import CANDIDATE_TAG, candidate_of, featurizer_of, featurizer_version_of
from vehicle_model.model import VehicleClassifier

# Registry answers that mean "there is no such model or alias" rather than "cannot reach it".
_ABSENT_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
# sys.path is process-wide: two loads saving and restoring it at once (a timed-out load still
# running beside the next one) would restore each other's entries. One load at a time edits it.
_SYS_PATH_LOCK = threading.Lock()


class NoChampion(LookupError):
    """The registry answered, but the model or its alias does not exist."""


class RegistryUnavailable(ConnectionError):
    """The registry could not be asked (down, unreachable, misconfigured)."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded, warmed-up model version and what the registry says about it.

    Attributes:
        name: registered model name.
        version: registered version number.
        alias: the alias it was loaded through.
        classifier: featurizer and heads, used directly (no pyfunc overhead).
        wide: the same heads on a featurizer using every core, for a call that finds the other
            inference threads idle (None: ``classifier`` already uses them all).
        run_id: the training run.
        tags: version tags (``candidate``, scores, promotion decision, ...).
        metrics: the training run's metrics.
        metadata: the ``metadata`` block of the MLmodel file.
        loaded_at: when this process loaded it.
    """

    name: str
    version: str
    alias: str
    classifier: VehicleClassifier
    wide: VehicleClassifier | None = None
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def describe(self) -> dict[str, Any]:
        """JSON-able description for the metadata endpoint."""
        featurizer = featurizer_of(self.metadata) or self.classifier.featurizer.describe()
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "candidate": self.tags.get(CANDIDATE_TAG) or candidate_of(self.metadata),
            "metrics": self.metrics,
            "tags": self.tags,
            "attributes": self.classifier.classes(),
            "featurizer": featurizer,
            "loaded_at": self.loaded_at.isoformat(),
        }


class ModelSource:
    """One registered model seen through one alias of one registry.

    Args:
        tracking_uri: the MLflow tracking (and registry) URI.
        name: registered model name.
        alias: the alias to follow.
    """

    def __init__(self, tracking_uri: str, name: str, alias: str) -> None:
        self.tracking_uri = tracking_uri
        self.name = name
        self.alias = alias
        self._client = None

    @property
    def client(self):  # mlflow.MlflowClient; created on first use, never at construction
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def alias_version(self) -> str:
        """The version number ``models:/NAME@ALIAS`` resolves to.

        Raises:
            NoChampion: the model or the alias does not exist.
            RegistryUnavailable: the registry could not be asked.
        """
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, self.alias).version)
        except MlflowException as exc:
            if exc.error_code in _ABSENT_CODES:
                raise NoChampion(f"model '{self.name}' has no '{self.alias}' alias") from exc
            raise RegistryUnavailable(f"registry error: {exc.message}") from exc
        except Exception as exc:  # drivers and HTTP clients raise many types; all mean "unreachable"
            self._client = None
            raise RegistryUnavailable(f"registry unreachable: {type(exc).__name__}: {exc}") from exc

    def load(self, version: str, folder: Path) -> LoadedModel:
        """Loads version ``version`` by number (not by alias, which may move meanwhile).

        The artifacts are downloaded into ``folder``, which the caller owns and removes once
        the model is warmed up (the ONNX session holds the weights from then on).
        """
        import mlflow

        model_version = self.client.get_model_version(self.name, version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=self.client.get_model_version_download_uri(self.name, version),
            dst_path=str(folder),
            tracking_uri=self.tracking_uri,
        )
        # MLflow prepends the model's code folder to sys.path on every load; this process runs
        # its own vehicle_model, so the path is only a leak (one more entry per reload).
        with _SYS_PATH_LOCK:
            saved_path = list(sys.path)
            try:
                pyfunc = mlflow.pyfunc.load_model(local)
            finally:
                sys.path[:] = saved_path
        classifier = pyfunc.unwrap_python_model().classifier
        _check_featurizer(version, dict(pyfunc.metadata.metadata or {}), classifier.featurizer.version)
        metrics = {}
        if model_version.run_id:
            metrics = dict(self.client.get_run(model_version.run_id).data.metrics)
        return LoadedModel(
            name=self.name,
            version=str(version),
            alias=self.alias,
            classifier=classifier,
            run_id=model_version.run_id,
            tags=dict(model_version.tags or {}),
            metrics=metrics,
            metadata=dict(pyfunc.metadata.metadata or {}),
        )


def _check_featurizer(version: str, metadata: Mapping[str, Any], running: str) -> None:
    """Refuses a version trained with other preprocessing than this process would apply.

    The app runs its own ``vehicle_model`` code; if that code's preprocessing differs from
    the code the heads were trained with, predictions would silently degrade (skew).
    """
    trained = featurizer_version_of(metadata)
    if trained and trained != running:
        raise ValueError(
            f"version {version} was trained with featurizer {trained!r} but this server applies {running!r}; "
            "serve it with matching code (or `mlflow models serve`), or retrain"
        )
