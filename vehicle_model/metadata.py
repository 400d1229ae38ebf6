"""What a registered version says about itself, in one format for its writer (registration)
and its readers (the promotion gate, the retrain check, serving).

The ``metadata`` block of its MLmodel file says what the version answers (attribute ->
labels, in the order of the probability columns: its contract), which featurizer its heads
were trained on (a server that would preprocess differently must refuse it), and which
candidate won; MLflow returns it without downloading weights (``mlflow.models.get_model_info``).
Its registry tags say what data it was trained on, so a run on the same data can stop early.
The names live here, in the package serving imports, because both sides read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ATTRIBUTES = "attributes"
FEATURIZER = "featurizer"
CANDIDATE = "candidate"
METRICS = "metrics"

# Tags on a registered version (the pipeline run carries the dataset and featurizer ones too).
CANDIDATE_TAG = "candidate"
FINGERPRINT_TAG = "fingerprint"  # the data snapshot's fingerprint
FEATURIZER_TAG = "featurizer"  # the featurizer's version
DATASET_TAG = "dataset.path"  # the dataset as given to the run
IMAGES_TAG = "dataset.images"  # how many images the snapshot holds

Block = Mapping[str, Any] | None  # a version logged without metadata has None


def model_metadata(
    contract: Mapping[str, Sequence[str]], featurizer: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The block to log with a version.

    Args:
        contract: attribute -> labels, in probability-column order (``VehicleClassifier.classes``).
        featurizer: the featurizer's description (``Featurizer.describe``), with its ``version``.
        extra: further entries, such as ``CANDIDATE`` and ``METRICS``.
    """
    return {
        ATTRIBUTES: {attribute: list(labels) for attribute, labels in contract.items()},
        FEATURIZER: dict(featurizer),
        **(extra or {}),
    }


def contract_of(metadata: Block) -> dict[str, list[str]]:
    """Attribute -> labels the version returns; empty when unrecorded."""
    return {attribute: list(labels) for attribute, labels in (metadata or {}).get(ATTRIBUTES, {}).items()}


def featurizer_of(metadata: Block) -> dict[str, Any] | None:
    """The description of the featurizer the version was trained with, when recorded."""
    return (metadata or {}).get(FEATURIZER) or None


def featurizer_version_of(metadata: Block) -> str | None:
    """The version of the featurizer the version was trained with, when recorded."""
    return (featurizer_of(metadata) or {}).get("version")


def candidate_of(metadata: Block) -> str | None:
    """The name of the candidate the version was trained as, when recorded."""
    return (metadata or {}).get(CANDIDATE)
