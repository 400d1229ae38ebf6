"""Resolving the dataset parameter: a path, or ``synthetic`` (generated on first use)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from tasks.data.synthetic import generate_dataset

SYNTHETIC = "synthetic"
SYNTHETIC_SIZE = 3000


@task(name="resolve-dataset")
def resolve_dataset_task(data: str, data_dir: Path, seed: int = 0) -> str:
    """Returns a dataset path; ``synthetic`` means ``data_dir/synthetic``, generated if missing."""
    if data != SYNTHETIC:
        return data
    root = data_dir / SYNTHETIC
    if not (root / "labels.csv").exists():
        get_run_logger().info("Generating the synthetic dataset (%d images) in %s", SYNTHETIC_SIZE, root)
        generate_dataset(root, n=SYNTHETIC_SIZE, seed=seed, replace=False)
    return str(root)
