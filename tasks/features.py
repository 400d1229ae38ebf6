"""Feature cache keyed by (content hash, featurizer version), and assembling split arrays.

A second run over the same images reads every feature from the cache and never starts
the backbone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data import IMAGE_COLUMN, SPLIT_COLUMN
from tasks.validation import SHA_COLUMN
from vehicle_model.featurizer import Featurizer


class FeatureCache:
    """One ``.npy`` per (featurizer version, image content) under ``root``.

    Writes go to a temporary file renamed into place, so parallel shards never see a
    half-written entry.
    """

    def __init__(self, root: Path | str, featurizer_version: str) -> None:
        self.featurizer_version = featurizer_version
        version_key = hashlib.sha256(featurizer_version.encode()).hexdigest()[:16]
        self.root = Path(root) / version_key

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.npy"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def get(self, sha256: str) -> np.ndarray:
        return np.load(self.path(sha256))

    def put(self, sha256: str, vector: np.ndarray) -> None:
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vector)
        os.replace(tmp, target)

    def missing(self, sha256s: Sequence[str]) -> list[str]:
        return [s for s in sha256s if not self.has(s)]


def featurize_into_cache(
    paths: Sequence[str],
    sha256s: Sequence[str],
    cache: FeatureCache,
    featurizer: Featurizer,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Featurizes the images whose content is not cached yet; returns how many it computed."""
    todo: dict[str, str] = {}
    for path, sha in zip(paths, sha256s):
        if sha not in todo and not cache.has(sha):
            todo[sha] = path
    if todo:
        features = featurizer.transform_paths(list(todo.values()), progress=progress)
        for sha, vector in zip(todo, features):
            cache.put(sha, vector)
    return len(todo)


def shard(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Splits the unique contents of a manifest into shards of at most ``size`` images."""
    unique = frame.drop_duplicates(SHA_COLUMN)[[IMAGE_COLUMN, SHA_COLUMN]].reset_index(drop=True)
    return [unique.iloc[i : i + size] for i in range(0, len(unique), size)]


def assemble(frame: pd.DataFrame, attributes: Sequence[str], cache: FeatureCache, out: Path) -> Path:
    """Writes one ``.npz`` with X/y per split (``X_train``, ``y_train__<attribute>``, ...)."""
    arrays: dict[str, np.ndarray] = {}
    for split, rows in frame.groupby(SPLIT_COLUMN, sort=True):
        arrays[f"X_{split}"] = np.stack([cache.get(sha) for sha in rows[SHA_COLUMN]])
        arrays[f"sha_{split}"] = rows[SHA_COLUMN].to_numpy(dtype=str)
        for attribute in attributes:
            arrays[f"y_{split}__{attribute}"] = rows[attribute].to_numpy(dtype=str)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so a concurrent run never reads a half-written file.
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, out)
    return out


def load_split(path: Path | str, split: str, attributes: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reads X and attribute -> y for one split from an assembled ``.npz``."""
    with np.load(path) as data:
        return data[f"X_{split}"], {a: data[f"y_{split}__{a}"] for a in attributes}


def features_from(
    cache: FeatureCache, sha256s: Sequence[str], paths: Sequence[str], featurize: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """Features of these images under the cache's featurizer version: cached ones read back,
    the rest computed with ``featurize`` (which must be that version's featurizer) and cached."""
    todo = [(sha, path) for sha, path in zip(sha256s, paths) if not cache.has(sha)]
    if todo:
        for (sha, _), vector in zip(todo, featurize([path for _, path in todo])):
            cache.put(sha, vector)
    return np.stack([cache.get(sha) for sha in sha256s])
