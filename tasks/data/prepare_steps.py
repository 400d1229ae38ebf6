"""Thin Prefect tasks over the data-stage functions: names, retries, logs, artifacts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks.data.atomic import atomic_file
from tasks.data.dataset import IMAGE_COLUMN, SPLIT_COLUMN, Dataset, load_dataset
from tasks.data.features import FeatureCache, assemble, featurize_into_cache
from tasks.data.split import SplitFractions, SplitLedger, assign_splits, fingerprint
from tasks.data.validation import (
    SHA_COLUMN,
    DataValidationError,
    ValidationConfig,
    problems_markdown,
    validate_dataset,
)
from vehicle_model.featurizer import Featurizer


@dataclass(frozen=True)
class PreparedData:
    """What later stages need to know about the prepared data.

    Attributes:
        source: the dataset path as given.
        fingerprint: sha256 over content hashes and labels.
        manifest: CSV of image, labels, sha256 and split (persisted for reproducibility).
        features: ``.npz`` with X/y per split.
        attributes: label columns.
        counts: split -> number of images.
        featurizer_version: identifies backbone, precision and preprocessing.
        precision: the backbone's precision (``fp32`` or ``int8``).
    """

    source: str
    fingerprint: str
    manifest: Path
    features: Path
    attributes: list[str]
    counts: dict[str, int]
    featurizer_version: str
    precision: str = "fp32"


@task(name="load-dataset")
def load_dataset_task(path: str, attribute: str = "label") -> Dataset:
    dataset = load_dataset(path, attribute)
    get_run_logger().info("Loaded %d images with attributes %s from %s", len(dataset.frame), dataset.attributes, path)
    return dataset


@task(name="validate-dataset")
def validate_task(dataset: Dataset, config: ValidationConfig) -> pd.DataFrame:
    """Validates; on failure publishes the problem table and raises before any training."""
    result = validate_dataset(dataset, config)
    if not result.ok:
        create_markdown_artifact(
            key="data-validation",
            markdown=f"# Data validation failed: {len(result.problems)} problems\n\n"
            f"{problems_markdown(result.problems)}",
            description="Problems found in the dataset",
        )
        raise DataValidationError(
            f"{len(result.problems)} validation problems; see the 'data-validation' artifact:\n"
            + result.problems.head(20).to_string(index=False)
        )
    get_run_logger().info("Validation passed for %d images", len(result.frame))
    return result.frame


@task(name="split-dataset")
def split_task(
    frame: pd.DataFrame, attributes: list[str], seed: int, fractions: SplitFractions, prepared_dir: Path
) -> tuple[pd.DataFrame, str, Path]:
    """Fingerprints the data, splits it and persists the split beside the prepared features.

    Images seen before keep the split the ledger holds for them; new assignments join it.
    """
    data_id = fingerprint(frame, attributes)
    with SplitLedger(prepared_dir, seed).update() as known:
        splits = assign_splits(frame, attributes, seed, fractions, known)
        ours = (
            frame[SPLIT_COLUMN].fillna("") == ""
            if SPLIT_COLUMN in frame.columns
            else pd.Series(True, index=frame.index)
        )
        known.update(zip(frame.loc[ours, SHA_COLUMN], splits[ours]))  # user-given splits are not ours to remember
    frame = frame.assign(split=splits)
    manifest = prepared_dir / data_id[:16] / f"split-seed{seed}.csv"
    with atomic_file(manifest) as handle:  # concurrent runs on the same data never see half a file
        frame[[IMAGE_COLUMN, *attributes, SHA_COLUMN, SPLIT_COLUMN]].to_csv(handle, index=False)
    get_run_logger().info("Fingerprint %s; split %s", data_id[:16], frame[SPLIT_COLUMN].value_counts().to_dict())
    return frame, data_id, manifest


@task(name="featurize-shard", retries=1)
def featurize_shard_task(
    paths: list[str],
    sha256s: list[str],
    cache_dir: str,
    threads: int,
    index: int,
    total: int,
    shifts: list[str | None] | None = None,
    precision: str = "fp32",
) -> int:
    """Featurizes the uncached images of one shard (``shifts`` names each row's shift, if any);
    runs in a worker process."""
    featurizer = Featurizer(threads=threads, precision=precision)
    cache = FeatureCache(cache_dir, featurizer.version)
    started = time.perf_counter()
    computed = featurize_into_cache(paths, sha256s, cache, featurizer, shifts=shifts)
    seconds = time.perf_counter() - started
    rate = f"{computed / seconds:.0f} images/s" if computed else "all cached"
    get_run_logger().info("Shard %d/%d: %d images, %d computed (%s)", index + 1, total, len(paths), computed, rate)
    return computed


@task(name="assemble-features")
def assemble_task(frame: pd.DataFrame, attributes: list[str], cache: FeatureCache, out: Path) -> Path:
    return assemble(frame, attributes, cache, out)
