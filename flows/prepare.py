"""Flow: load → validate → split → featurize (sharded, with shifted test images and training copies) → assemble."""

from __future__ import annotations

import pandas as pd
from prefect import flow, get_run_logger

from flows.runners import make_task_runner
from flows.settings import PipelineSettings, get_settings
from tasks.data.features import FeatureCache, shard
from tasks.data.prepare_steps import (
    PreparedData,
    assemble_task,
    featurize_shard_task,
    load_dataset_task,
    split_task,
    validate_task,
)
from tasks.data.shifts import (
    SHIFT_COLUMN,
    augmented_training_rows,
    greyscale_calibration_rows,
    over_exposure_expert_rows,
    shifted_calibration_rows,
    shifted_evaluation_rows,
)
from tasks.data.split import SplitFractions
from tasks.data.validation import SHA_COLUMN, ValidationConfig
from vehicle_model.featurizer import Featurizer


@flow(name="prepare-data")
def prepare_data(
    data: str,
    seed: int = 0,
    min_per_class: int = 5,
    attribute: str = "label",
    settings: PipelineSettings | None = None,
    augment_copies: int = 0,
) -> PreparedData:
    """Validates a dataset, splits it and caches its features.

    Args:
        data: a CSV manifest, a folder with ``labels.csv``, or an ImageFolder.
        seed: the split seed.
        min_per_class: fewest images allowed per class.
        attribute: the label name for an ImageFolder dataset.
        settings: paths and runner settings; built from the environment when omitted.
        augment_copies: shifted copies of each training image, featurized as split ``augment``.
    """
    settings = settings or get_settings()
    dataset = load_dataset_task(data, attribute)
    frame = validate_task(dataset, ValidationConfig(min_per_class=min_per_class))
    frame, data_id, manifest = split_task(frame, dataset.attributes, seed, SplitFractions(), settings.prepared_dir)

    # The shifted evaluation set, the training copies, the greyscale and shifted validation
    # images and the over-exposed training images ride along as extra splits; they exist only
    # as features.
    extra = [
        shifted_evaluation_rows(frame) if settings.shifted_evaluation else frame.iloc[:0],
        augmented_training_rows(frame, augment_copies, seed),
        greyscale_calibration_rows(frame),
        shifted_calibration_rows(frame),
        over_exposure_expert_rows(frame, seed),
    ]
    featurized = pd.concat([frame, *extra], ignore_index=True)
    # Hashing the backbone names the cache; do it once per run, not per step.
    featurizer = Featurizer(precision=settings.backbone_precision)
    cache = FeatureCache(settings.feature_cache_dir, featurizer.version)
    computed = featurize_shards(featurized, cache, settings, featurizer.precision)
    get_run_logger().info(
        "Featurized %d new images; %d from cache", computed, featurized[SHA_COLUMN].nunique() - computed
    )

    features = assemble_task(featurized, dataset.attributes, cache, manifest.with_suffix(".npz"))
    return PreparedData(
        source=str(data),
        fingerprint=data_id,
        manifest=manifest,
        features=features,
        attributes=dataset.attributes,
        counts=frame["split"].value_counts().to_dict(),
        featurizer_version=cache.featurizer_version,
        precision=featurizer.precision,
    )


def featurize_shards(frame, cache: FeatureCache, settings: PipelineSettings, precision: str) -> int:
    """Maps the featurizer over shards of uncached images on the configured task runner."""
    todo = frame[~frame[SHA_COLUMN].map(cache.has)]
    if todo.empty:
        return 0
    shards = shard(todo, settings.shard_size)
    workers = max(1, min(settings.workers, len(shards)))
    threads = max(1, settings.workers // workers)
    with make_task_runner(settings, workers) as runner:
        futures = [
            runner.submit(
                featurize_shard_task,
                {
                    "paths": list(part["image"]),
                    "sha256s": list(part[SHA_COLUMN]),
                    "shifts": [k if isinstance(k, str) else None for k in part[SHIFT_COLUMN]]
                    if SHIFT_COLUMN in part
                    else None,
                    "cache_dir": str(settings.feature_cache_dir),
                    "threads": threads,
                    "precision": precision,
                    "index": i,
                    "total": len(shards),
                },
            )
            for i, part in enumerate(shards)
        ]
        return sum(future.result() for future in futures)
