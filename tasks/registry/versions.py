"""Logging the one-artifact model, registering versions and moving aliases (``aliases``)."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Mapping
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import joblib
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types.schema import ColSpec, Schema
from PIL import Image

import vehicle_model
from tasks.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS
from tasks.registry.gate import PromotionDecision
from vehicle_model.metadata import contract_of, featurizer_version_of, model_metadata
from vehicle_model.model import VehicleClassifier
from vehicle_model.pyfunc import BACKBONE_ARTIFACT, DECISIONS_ARTIFACT, HEADS_ARTIFACT, INPUT_COLUMN, VehiclePyfunc

MODEL_ARTIFACT = "model"
REPLACED_TAG = "promotion.replaced"
# What the model needs at inference time, pinned to what it was trained with.
RUNTIME_PACKAGES = ("numpy", "pandas", "pillow", "onnxruntime", "scikit-learn", "joblib", "mlflow")


def pip_requirements() -> list[str]:
    """Explicit pins: MLflow's inference of requirements loads the model in a subprocess, seconds
    per registration (docs/model-quality.md, "The code's choices")."""
    return [f"{name}=={package_version(name)}" for name in RUNTIME_PACKAGES]


def example_image_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    """A small PNG used as the logged input example."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (180, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def signature() -> ModelSignature:
    """Input: a column of image bytes. Output: one record per image (attribute -> label, probabilities)."""
    return ModelSignature(inputs=Schema([ColSpec("binary", INPUT_COLUMN)]))


def log_classifier(classifier: VehicleClassifier, metadata: Mapping[str, Any] | None = None) -> ModelInfo:
    """Logs featurizer + heads (+ decision policy) as one pyfunc in the active run, with
    ``vehicle_model`` as code.

    Args:
        classifier: featurizer, fitted heads and, when fitted, the decision policy (artifact
            ``decisions``; without one the version answers every attribute ``uncertain``).
        metadata: entries for the model's metadata block beside its contract and featurizer
            (``vehicle_model.metadata``), such as the candidate's name.
    """
    with tempfile.TemporaryDirectory() as tmp:
        heads_path = Path(tmp) / "heads.joblib"
        joblib.dump(dict(classifier.heads), heads_path)
        artifacts = {BACKBONE_ARTIFACT: str(classifier.featurizer.backbone_path), HEADS_ARTIFACT: str(heads_path)}
        if classifier.policy is not None:
            policy_path = Path(tmp) / "decisions.json"
            policy_path.write_text(classifier.policy.to_json())
            artifacts[DECISIONS_ARTIFACT] = str(policy_path)
        code = _python_sources(Path(vehicle_model.__file__).parent, Path(tmp) / "code")
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=VehiclePyfunc(classifier.featurizer.precision),
            artifacts=artifacts,
            code_paths=[str(code)],
            pip_requirements=pip_requirements(),
            signature=signature(),
            input_example=pd.DataFrame({INPUT_COLUMN: [example_image_bytes()]}),
            metadata=model_metadata(classifier.classes(), classifier.featurizer.describe(), metadata),
        )


def _python_sources(package: Path, out: Path) -> Path:
    """Copies a package's Python files only: the ONNX asset already travels as an artifact."""
    target = out / package.name
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("assets", "__pycache__", "*.pyc"))
    return target


def register_version(model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    """Registers a new version of ``name`` and tags it."""
    return mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})


def version_for_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind an alias, or None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metadata(name: str, version: str) -> dict[str, Any] | None:
    """A registered version's metadata block (no download of weights)."""
    return mlflow.models.get_model_info(f"models:/{name}/{version}").metadata


def version_contract(name: str, version: str) -> dict[str, list[str]]:
    """Attribute -> labels a registered version returns."""
    return contract_of(version_metadata(name, version))


def version_featurizer(name: str, version: str) -> str | None:
    """The featurizer version logged with a registered version."""
    return featurizer_version_of(version_metadata(name, version))


def apply_decision(
    client: MlflowClient, name: str, version: str, decision: PromotionDecision, champion: str = CHAMPION
) -> None:
    """Records the decision (counts, interval, reason) as version tags, then moves the aliases.

    Tags first: a run stopped in between never leaves an alias on a version whose decision
    is not recorded.
    """
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promote:
        promote(client, name, version, champion)
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)


def promote(client: MlflowClient, name: str, version: str, champion: str = CHAMPION) -> str | None:
    """Makes ``version`` the champion (alias ``champion``, i.e. MODEL_ALIAS); the old one
    becomes ``previous``. Returns the old champion's version."""
    client.get_model_version(name, version)  # raises a clear error for an unknown version
    old = version_for_alias(client, name, champion)
    if old is not None and str(old.version) == str(version):
        return str(old.version)
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS, str(old.version))
    client.set_registered_model_alias(name, champion, str(version))
    # Lets anyone check that ``previous`` is what this champion replaced (the lock keeps it so).
    client.set_model_version_tag(name, str(version), REPLACED_TAG, str(old.version) if old else "")
    current = version_for_alias(client, name, CHALLENGER)
    if current is not None and str(current.version) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return str(old.version) if old else None


def rollback_pair(client: MlflowClient, name: str, champion_alias: str = CHAMPION) -> tuple[ModelVersion, ModelVersion]:
    """The (champion, previous) a rollback would swap.

    Raises:
        LookupError: there is no champion, no ``previous``, or ``previous`` is the champion itself.
    """
    previous = version_for_alias(client, name, PREVIOUS)
    champion = version_for_alias(client, name, champion_alias)
    if previous is None:
        raise LookupError(f"model '{name}' has no '{PREVIOUS}' version to roll back to")
    if champion is None:
        raise LookupError(f"model '{name}' has no '{champion_alias}' to roll back from")
    if str(previous.version) == str(champion.version):
        raise LookupError(
            f"model '{name}': '{PREVIOUS}' is the {champion_alias} itself (v{champion.version}); "
            "nothing to roll back to"
        )
    return champion, previous


def rollback(client: MlflowClient, name: str, champion_alias: str = CHAMPION) -> tuple[str, str]:
    """Swaps ``champion`` and ``previous``. Returns (new champion, new previous).

    Raises:
        LookupError: there is no ``previous`` version to go back to.
    """
    champion, previous = rollback_pair(client, name, champion_alias)
    client.set_registered_model_alias(name, champion_alias, str(previous.version))
    client.set_registered_model_alias(name, PREVIOUS, str(champion.version))
    client.set_model_version_tag(name, str(previous.version), REPLACED_TAG, str(champion.version))
    return str(previous.version), str(champion.version)
