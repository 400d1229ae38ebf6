"""``ImageStore``: content-addressed, idempotent and atomic, on a local folder and on other fsspec URLs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from feedback.images import ImageStore

pytestmark = pytest.mark.unit


@pytest.fixture(params=["folder", "file-url", "memory"])
def images(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ImageStore]:
    if request.param == "memory":
        store = ImageStore(f"memory://feedback-test-{uuid.uuid4().hex}")
        yield store
        if store.fs.exists(store.root):
            store.fs.rm(store.root, recursive=True)
        return
    yield ImageStore(str(tmp_path / "review" / "images") if request.param == "folder" else f"file://{tmp_path}/images")


def test_an_image_is_stored_under_its_sha256_and_read_back(images: ImageStore) -> None:
    data = b"\x89PNG not really, any bytes do"

    sha = images.put(data)

    assert sha == hashlib.sha256(data).hexdigest()
    assert images.get(sha) == data and images.exists(sha)
    assert images.fs.find(images.root) == [images.path(sha)]
    assert images.path(sha).endswith(f"/{sha[:2]}/{sha}")


def test_the_same_bytes_twice_are_stored_once(images: ImageStore) -> None:
    first, second = images.put(b"same"), images.put(b"same")

    assert first == second
    assert images.fs.find(images.root) == [images.path(first)]


def test_many_writers_of_the_same_image_leave_one_whole_file_and_no_partial_one(images: ImageStore) -> None:
    data = bytes(range(256)) * 4000

    with ThreadPoolExecutor(8) as pool:
        shas = set(pool.map(lambda _: images.put(data), range(16)))

    assert len(shas) == 1
    assert images.fs.find(images.root) == [images.path(shas.pop())]
    assert images.get(hashlib.sha256(data).hexdigest()) == data


def test_a_deleted_image_is_gone_and_deleting_it_again_says_so(images: ImageStore) -> None:
    sha = images.put(b"gone soon")

    assert images.delete(sha)
    assert not images.exists(sha) and not images.delete(sha)
    with pytest.raises(FileNotFoundError, match=sha):
        images.get(sha)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "abc", ""])
def test_a_name_that_is_not_a_sha256_is_refused_before_any_file_is_touched(images: ImageStore, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        images.get(bad)
