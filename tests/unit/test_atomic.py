"""``atomic_file`` and ``atomic_folder``: readers see all of the new content or none of it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tasks.data.atomic import atomic_file, atomic_folder

pytestmark = pytest.mark.unit


class Boom(Exception):
    """Raised by a writer half-way through."""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_file_is_written_and_its_parent_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.csv"

    with atomic_file(target) as handle:
        handle.write(b"new")

    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["x.csv"]


def test_a_failing_writer_leaves_the_old_content_and_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    target.write_bytes(b"old")

    with pytest.raises(Boom), atomic_file(target) as handle:
        handle.write(b"half of the new")
        raise Boom

    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]


def test_a_failing_writer_of_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Boom), atomic_file(tmp_path / "x.csv") as handle:
        handle.write(b"half")
        raise Boom

    assert list(tmp_path.iterdir()) == []


def test_a_reader_sees_the_old_content_until_the_writer_finishes(tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    target.write_bytes(b"old")

    with atomic_file(target) as handle:
        handle.write(b"new")
        handle.flush()
        assert target.read_bytes() == b"old"

    assert target.read_bytes() == b"new"


def test_concurrent_writers_each_land_whole(tmp_path: Path) -> None:
    """Interleaved writers never share a partial file; the last rename wins with all its bytes."""
    target = tmp_path / "x.bin"
    both_open = threading.Barrier(2)

    def write(byte: bytes) -> None:
        with atomic_file(target) as handle:
            handle.write(byte * 50_000)
            both_open.wait()
            handle.write(byte * 50_000)

    threads = [threading.Thread(target=write, args=(b,)) for b in (b"a", b"b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert target.read_bytes() in (b"a" * 100_000, b"b" * 100_000)
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_a_file_gets_the_mode_of_any_new_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"")

    with atomic_file(tmp_path / "atomic") as handle:
        handle.write(b"")

    assert (tmp_path / "atomic").stat().st_mode == plain.stat().st_mode


def test_a_folder_is_published_whole_and_its_staging_is_hidden(tmp_path: Path) -> None:
    target = tmp_path / "root" / "batch"

    with atomic_folder(target) as staging:
        (staging / "images").mkdir()
        (staging / "images" / "a.png").write_bytes(b"a")
        assert staging.parent == target.parent and staging.name.startswith(".")
        assert not target.exists()

    assert snapshot(target) == {"images/a.png": b"a"}
    assert [p.name for p in target.parent.iterdir()] == ["batch"]


def test_a_failing_folder_writer_leaves_the_old_folder_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "labels.csv").write_bytes(b"old")

    with pytest.raises(Boom), atomic_folder(target, if_exists="replace") as staging:
        (staging / "labels.csv").write_bytes(b"half")
        raise Boom

    assert snapshot(target) == {"labels.csv": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


@pytest.mark.parametrize(
    ("if_exists", "expected"),
    [("replace", {"new.csv": b"new"}), ("keep", {"old.csv": b"old"})],
)
def test_a_folder_that_holds_files_is_replaced_or_kept(tmp_path: Path, if_exists: str, expected: dict) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "old.csv").write_bytes(b"old")

    with atomic_folder(target, if_exists=if_exists) as staging:
        (staging / "new.csv").write_bytes(b"new")

    assert snapshot(target) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no staging, no retired folder


def test_a_folder_that_holds_files_is_refused_with_fail(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "old.csv").write_bytes(b"old")

    with pytest.raises(FileExistsError, match="already exists"), atomic_folder(target) as staging:
        (staging / "new.csv").write_bytes(b"new")

    assert snapshot(target) == {"old.csv": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_an_empty_folder_is_replaced_in_one_rename(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()

    with atomic_folder(tmp_path / "d") as staging:
        (staging / "new.csv").write_bytes(b"new")

    assert snapshot(tmp_path / "d") == {"new.csv": b"new"}
