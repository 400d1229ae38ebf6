"""Settings of the training process, read from the environment when built."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    """Where the pipeline reads and writes; every default works on a fresh checkout."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    mlflow_artifact_root: str = Field("mlruns/artifacts", description="used only for a local tracking store")
    mlflow_experiment: str = "vehicle-classification"
    mlflow_ui_url: str = Field("http://127.0.0.1:5000", description="where reviewers open MLflow; used in links")
    model_name: str = "vehicle-classifier"
    model_alias: str = "champion"
    data_dir: Path = Path("data")
    prepared_dir: Path = Path("data/prepared")
    feature_cache_dir: Path = Path("data/features")
    log_dir: Path = Path("logs")
    task_runner: str = Field("process", alias="PIPELINE_TASK_RUNNER", description="process | thread | dask")
    workers: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), alias="PIPELINE_WORKERS")
    dask_address: str | None = Field(None, alias="PIPELINE_DASK_ADDRESS")
    shard_size: int = Field(512, alias="PIPELINE_SHARD_SIZE")


def get_settings() -> PipelineSettings:
    return PipelineSettings()
