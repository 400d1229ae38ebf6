"""Feature cache keyed by (content hash, featurizer version), and assembling split arrays.

A second run over the same images reads every feature from the cache and never starts
the backbone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tasks.data.atomic import atomic_file
from tasks.data.dataset import IMAGE_COLUMN, SPLIT_COLUMN
from tasks.data.shifts import SHIFT_COLUMN, SHIFTED_SPLIT_PREFIX, apply_shift
from tasks.data.validation import SHA_COLUMN
from vehicle_model.featurizer import Featurizer
from vehicle_model.images import ImageLimits, decode_image


class FeatureCache:
    """One ``.npy`` per (featurizer version, image content) under ``root``.

    Entries are written atomically (``tasks.data.atomic``), so parallel shards never see a
    half-written one.
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
        with atomic_file(self.path(sha256)) as handle:
            np.save(handle, vector)

    def missing(self, sha256s: Sequence[str]) -> list[str]:
        return [s for s in sha256s if not self.has(s)]


def featurize_into_cache(
    paths: Sequence[str],
    sha256s: Sequence[str],
    cache: FeatureCache,
    featurizer: Featurizer,
    progress: Callable[[int], None] | None = None,
    shifts: Sequence[str | None] | None = None,
) -> int:
    """Featurizes the images whose content is not cached yet; returns how many it computed.

    With ``shifts``, a row naming a kind is its image under that shift (``tasks.data.shifts``),
    cached under its ``sha256``, which is then the shifted image's key.
    """
    kinds = list(shifts) if shifts is not None else [None] * len(paths)
    todo: dict[str, tuple[str, str | None]] = {}
    for path, sha, kind in zip(paths, sha256s, kinds):
        if sha not in todo and not cache.has(sha):
            todo[sha] = (path, kind if isinstance(kind, str) and kind else None)
    if not todo:
        return 0
    items = [(path, kind, sha) for sha, (path, kind) in todo.items()]
    features = featurizer.transform(items, lambda item: _load_shifted(item, featurizer.limits), progress=progress)
    for sha, vector in zip(todo, features):
        cache.put(sha, vector)
    return len(todo)


def _load_shifted(item: tuple[str, str | None, str], limits: ImageLimits) -> Image.Image:
    path, kind, key = item
    image = decode_image(Path(path).read_bytes(), limits)
    return image if kind is None else apply_shift(image, kind, key)


def shard(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Splits the unique contents of a manifest into shards of at most ``size`` images."""
    columns = [IMAGE_COLUMN, SHA_COLUMN, *([SHIFT_COLUMN] if SHIFT_COLUMN in frame.columns else [])]
    unique = frame.drop_duplicates(SHA_COLUMN)[columns].reset_index(drop=True)
    return [unique.iloc[i : i + size] for i in range(0, len(unique), size)]


def assemble(frame: pd.DataFrame, attributes: Sequence[str], cache: FeatureCache, out: Path) -> Path:
    """Writes one ``.npz`` with X/y per split (``X_train``, ``y_train__<attribute>``, ...)."""
    arrays: dict[str, np.ndarray] = {}
    for split, rows in frame.groupby(SPLIT_COLUMN, sort=True):
        arrays[f"X_{split}"] = np.stack([cache.get(sha) for sha in rows[SHA_COLUMN]])
        arrays[f"sha_{split}"] = rows[SHA_COLUMN].to_numpy(dtype=str)
        for attribute in attributes:
            arrays[f"y_{split}__{attribute}"] = rows[attribute].to_numpy(dtype=str)
    with atomic_file(out) as handle:  # a concurrent run never reads a half-written file
        np.savez(handle, **arrays)
    return out


def load_split(path: Path | str, split: str, attributes: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reads X and attribute -> y for one split from an assembled ``.npz``."""
    with np.load(path) as data:
        return data[f"X_{split}"], {a: data[f"y_{split}__{a}"] for a in attributes}


def load_shifted(path: Path | str, attributes: Sequence[str]) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Kind -> (X, attribute -> y) of the shifted evaluation set in an assembled ``.npz``;
    empty when the features hold none (no test split)."""
    with np.load(path) as data:
        splits = sorted(key.removeprefix("X_") for key in data.files if key.startswith(f"X_{SHIFTED_SPLIT_PREFIX}"))
    return {split.removeprefix(SHIFTED_SPLIT_PREFIX): load_split(path, split, attributes) for split in splits}


def load_split_if_present(
    path: Path | str, split: str, attributes: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Like ``load_split``, or None when the features hold no such split (the augmented
    copies with ``augment_copies=0``, the greyscale validation images without a validation split)."""
    with np.load(path) as data:
        present = f"X_{split}" in data.files
    return load_split(path, split, attributes) if present else None


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
