"""Settings of the training process, read from the environment when built."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedback import defaults as feedback_defaults
from tasks.defaults import TARGET_PRECISION
from vehicle_model.featurizer import usable_cores

if TYPE_CHECKING:
    from tasks.registry.gate import GatePolicy


class RegistrySettings(BaseSettings):
    """Where MLflow keeps runs and models, and which registered model is meant.

    Read by their unprefixed names, never with a subclass's prefix; ``MLFLOW_TRACKING_URI``,
    ``MODEL_NAME`` and ``MODEL_ALIAS`` are the names serving reads too, so one environment
    points training, monitoring and serving at the same model.
    """

    model_config = SettingsConfigDict(extra="ignore", protected_namespaces=(), populate_by_name=True)

    mlflow_tracking_uri: str = Field("sqlite:///mlruns/mlflow.db", alias="MLFLOW_TRACKING_URI")
    mlflow_artifact_root: str = Field("mlruns/artifacts", alias="MLFLOW_ARTIFACT_ROOT", description="local stores only")
    mlflow_ui_url: str = Field("http://127.0.0.1:5000", alias="MLFLOW_UI_URL", description="used in links")
    model_name: str = Field("vehicle-classifier", alias="MODEL_NAME")
    model_alias: str = Field("champion", alias="MODEL_ALIAS")


class LabelSettings(BaseSettings):
    """Where the learning loop keeps its labels and images, and when labels are worth a harvest.

    Read by their unprefixed names (the ones serving reads), so the pipeline harvests from and
    expires the same store serving writes to; ``PIPELINE_HARVEST_MIN_LABELS`` is the pipeline's
    own, read by the training and the monitoring settings alike.
    """

    model_config = SettingsConfigDict(extra="ignore", protected_namespaces=(), populate_by_name=True)

    labels_database_url: str = Field(feedback_defaults.DATABASE_URL, alias="LABELS_DATABASE_URL")
    review_images_url: str = Field(feedback_defaults.IMAGES_URL, alias="REVIEW_IMAGES_URL")
    review_retention_days: float = Field(
        feedback_defaults.RETENTION_DAYS, gt=0, alias="REVIEW_RETENTION_DAYS", description="kept images live this long"
    )
    harvest_min_labels: int = Field(
        50,
        ge=1,
        alias="PIPELINE_HARVEST_MIN_LABELS",
        description="new harvestable labels in a region that start a harvest (event vehicle.labels.ready)",
    )


class PipelineSettings(RegistrySettings, LabelSettings):
    """Where the pipeline reads and writes; every default works on a fresh checkout.

    Shared names (``MLFLOW_TRACKING_URI``, ``MODEL_NAME``, ``MODEL_ALIAS``, the ``LabelSettings``)
    are read as-is; the rest take the ``PIPELINE_`` prefix (e.g. ``PIPELINE_DATA_DIR``).
    """

    model_config = SettingsConfigDict(env_prefix="PIPELINE_")

    mlflow_experiment: str = Field("vehicle-classification", alias="MLFLOW_EXPERIMENT_NAME")
    training_data: str = Field(
        "synthetic", description="what training runs use when not told: a dataset path or batch root, or 'synthetic'"
    )
    gate_min_images: int = Field(30, ge=1, description="fewest shared unseen test images the gate decides on")
    gate_confidence: float = Field(0.95, gt=0, lt=1, description="level of the bootstrap interval of the gain")
    gate_min_lower_bound: float = Field(0.0, description="the interval's lower bound must be above this")
    gate_resamples: int = Field(1000, ge=100, description="bootstrap resamples")
    data_dir: Path = Path("data")
    prepared_dir: Path = Path("data/prepared")
    feature_cache_dir: Path = Path("data/features")
    log_dir: Path = Path("logs")
    task_runner: str = Field("process", description="process | thread (dask when dask_address is set)")
    workers: int = Field(default_factory=usable_cores)
    dask_address: str | None = None
    shard_size: int = 512
    backbone_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        alias="BACKBONE_PRECISION",
        description="the backbone new versions are trained with: auto is int8 on a CPU with VNNI or AMX, else fp32",
    )
    target_precision: float = Field(
        TARGET_PRECISION,
        gt=0,
        lt=1,
        description="precision a version's confident answers are fitted to reach, per attribute, on validation",
    )
    shifted_evaluation: bool = Field(
        True, description="score the winner on the shifted test images too (off: a quicker run, no robustness report)"
    )


def get_settings() -> PipelineSettings:
    return PipelineSettings()


def gate_policy(settings: PipelineSettings, min_improvement: float, seed: int) -> GatePolicy:
    """The gate's thresholds: ``min_improvement`` is per run, the rest are settings."""
    # Imported here: the gate brings scikit-learn's metrics, which every CLI command that only
    # reads settings (promote, rollback, serve) would otherwise pay for at start.
    from tasks.registry.gate import GatePolicy

    return GatePolicy(
        min_improvement=min_improvement,
        min_images=settings.gate_min_images,
        confidence=settings.gate_confidence,
        min_lower_bound=settings.gate_min_lower_bound,
        resamples=settings.gate_resamples,
        seed=seed,
    )
