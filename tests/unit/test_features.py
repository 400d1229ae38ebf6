"""The feature cache: content-addressed, versioned, computing only what is missing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.data.dataset import load_dataset
from tasks.data.features import FeatureCache, assemble, features_from, featurize_into_cache, load_split, shard
from tasks.data.shifts import apply_shift, shift_key
from vehicle_model.featurizer import FEATURE_DIM, Featurizer
from vehicle_model.images import decode_image

pytestmark = pytest.mark.unit


class CountingFeaturizer(Featurizer):
    """A real featurizer that records how many images reach the backbone."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.embedded = 0

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        self.embedded += len(pixels)
        return super().embed(pixels)


def sha_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Six synthetic images followed by a renamed copy of the first two."""
    paths = list(load_dataset(tiny_dataset).frame["image"][:6])
    copies = tmp_path_factory.mktemp("copies")
    for index in (0, 1):
        target = copies / f"copy-{index}{Path(paths[index]).suffix}"
        shutil.copy(paths[index], target)
        paths.append(str(target))
    return paths


def test_put_get_has_roundtrip(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "v1")
    key = "ab" + "0" * 62
    vector = np.arange(FEATURE_DIM, dtype=np.float32)
    assert not cache.has(key)

    cache.put(key, vector)

    assert cache.has(key)
    stored = cache.get(key)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, vector)
    assert cache.missing([key, "cd" + "0" * 62]) == ["cd" + "0" * 62]
    assert not list(tmp_path.rglob("*.tmp"))  # written to a temporary name, then renamed


def test_put_replaces_an_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "v1")
    key = "ef" + "1" * 62
    cache.put(key, np.zeros(3, dtype=np.float32))

    cache.put(key, np.ones(3, dtype=np.float32))

    np.testing.assert_array_equal(cache.get(key), np.ones(3, dtype=np.float32))


def test_featurizer_versions_do_not_share_entries(tmp_path: Path) -> None:
    key = "ab" + "0" * 62
    FeatureCache(tmp_path, "effnet-a").put(key, np.ones(4, dtype=np.float32))

    assert FeatureCache(tmp_path, "effnet-a").has(key)
    assert not FeatureCache(tmp_path, "effnet-b").has(key)


def test_featurize_into_cache_computes_each_content_once_then_nothing(tmp_path: Path, images: list[str]) -> None:
    shas = [sha_of(p) for p in images]
    assert len(set(shas)) == 6  # eight files, six contents
    featurizer = CountingFeaturizer(batch_size=4)
    cache = FeatureCache(tmp_path, featurizer.version)

    computed = featurize_into_cache(images, shas, cache, featurizer)

    assert computed == 6
    assert featurizer.embedded == 6
    assert cache.missing(shas) == []
    np.testing.assert_allclose(
        np.stack([cache.get(s) for s in shas[:6]]), featurizer.transform_paths(images[:6]), atol=1e-5
    )

    # A featurizer whose backbone does not exist fails as soon as it is used,
    # so a second pass that returns normally never touched the backbone.
    absent = Featurizer(backbone_path=tmp_path / "absent.onnx")
    assert featurize_into_cache(images, shas, cache, absent) == 0
    assert "session" not in absent.__dict__
    with pytest.raises(Exception, match="absent.onnx"):
        absent.transform_paths(images[:1])


def test_featurize_into_cache_computes_only_new_content(tmp_path: Path, images: list[str]) -> None:
    shas = [sha_of(p) for p in images]
    featurizer = CountingFeaturizer(batch_size=4)
    cache = FeatureCache(tmp_path, featurizer.version)
    featurize_into_cache(images[:4], shas[:4], cache, featurizer)
    featurizer.embedded = 0

    computed = featurize_into_cache(images, shas, cache, featurizer)

    assert computed == 2  # images 4 and 5; 6 and 7 are copies of 0 and 1
    assert featurizer.embedded == 2


def test_featurize_into_cache_reports_progress(tmp_path: Path, images: list[str]) -> None:
    shas = [sha_of(p) for p in images]
    done: list[int] = []

    featurize_into_cache(images, shas, FeatureCache(tmp_path, "v"), Featurizer(batch_size=4), progress=done.append)

    assert done == [4, 2]


def split_frame() -> pd.DataFrame:
    rows = [
        ("train", "car", "red"),
        ("train", "bus", "blue"),
        ("train", "car", "blue"),
        ("validation", "bus", "red"),
        ("test", "car", "red"),
        ("test", "bus", "blue"),
    ]
    frame = pd.DataFrame(rows, columns=["split", "vehicle_type", "color"])
    frame["sha256"] = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(len(frame))]
    frame["image"] = [f"/data/{i}.png" for i in range(len(frame))]
    return frame


def test_assemble_and_load_split_roundtrip(tmp_path: Path) -> None:
    frame = split_frame()
    cache = FeatureCache(tmp_path / "cache", "v1")
    vectors = {sha: np.full(FEATURE_DIM, i, dtype=np.float32) for i, sha in enumerate(frame["sha256"])}
    for sha, vector in vectors.items():
        cache.put(sha, vector)

    out = assemble(frame, ["vehicle_type", "color"], cache, tmp_path / "out" / "features.npz")

    for split in ("train", "validation", "test"):
        rows = frame[frame["split"] == split]
        X, y = load_split(out, split, ["vehicle_type", "color"])
        assert X.shape == (len(rows), FEATURE_DIM)
        np.testing.assert_array_equal(X, np.stack([vectors[s] for s in rows["sha256"]]))
        assert y["vehicle_type"].tolist() == rows["vehicle_type"].tolist()
        assert y["color"].tolist() == rows["color"].tolist()


def test_shard_splits_unique_contents(images: list[str]) -> None:
    frame = pd.DataFrame({"image": images, "sha256": [sha_of(p) for p in images]})

    shards = shard(frame, 4)

    assert [len(s) for s in shards] == [4, 2]
    assert pd.concat(shards)["sha256"].is_unique
    assert set(pd.concat(shards)["sha256"]) == set(frame["sha256"])


def test_features_from_reads_the_versions_cache_and_computes_only_the_rest(tmp_path: Path) -> None:
    """How the gate gets a champion's features under its own (older) featurizer version."""
    cache = FeatureCache(tmp_path, "champion-featurizer-v1")
    cache.put("a" * 64, np.array([1.0, 2.0], dtype=np.float32))
    asked: list[list[str]] = []

    def featurize(paths: list[str]) -> np.ndarray:
        asked.append(paths)
        return np.array([[9.0, 9.0]] * len(paths), dtype=np.float32)

    X = features_from(cache, ["a" * 64, "b" * 64], ["/img/a.png", "/img/b.png"], featurize)

    assert X.tolist() == [[1.0, 2.0], [9.0, 9.0]]
    assert asked == [["/img/b.png"]], "only the uncached image is featurized"
    assert cache.has("b" * 64)
    assert FeatureCache(tmp_path, "current-featurizer").missing(["a" * 64]) == ["a" * 64], "versions never mix"


def test_shifted_rows_are_featurized_as_their_shifted_image_under_their_key(images: list[str], tmp_path: Path) -> None:
    featurizer = CountingFeaturizer(threads=1)
    cache = FeatureCache(tmp_path, featurizer.version)
    sha = sha_of(images[0])
    keys = [shift_key(sha, "greyscale"), shift_key(sha, "blur")]

    computed = featurize_into_cache([images[0]] * 2, keys, cache, featurizer, shifts=["greyscale", "blur"])

    assert computed == 2 and not cache.has(sha), "cached under the shifted image's key only"
    source = decode_image(Path(images[0]).read_bytes())
    expected = featurizer.transform_images(
        [apply_shift(source, "greyscale", keys[0]), apply_shift(source, "blur", keys[1])]
    )
    np.testing.assert_allclose(np.stack([cache.get(k) for k in keys]), expected, atol=1e-5)
    assert featurize_into_cache([images[0]] * 2, keys, cache, featurizer, shifts=["greyscale", "blur"]) == 0
