"""Writing a file, or publishing a folder, so that a reader sees all of it or none of it.

Both write beside the target under a hidden name of their own and rename it into place. A
rename within one file system is atomic, so a concurrent reader finds the old content or the
new, never half; concurrent writers never write into each other's output, and the last rename
wins whole. Partial output is removed on any error. Nothing is fsynced: the guarantee is
against concurrent readers and a crashed process, not a power cut, and what the data stage
writes (cached features, manifests, generated or copied images) can be rebuilt from its sources.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

IfExists = Literal["replace", "keep", "fail"]


def _sibling(target: Path, kind: str, suffix: str = "") -> Path:
    """A hidden, unique name beside ``target`` (loaders skip dot-files and dot-folders)."""
    return target.with_name(f".{target.name}.{kind}-{secrets.token_hex(4)}{suffix}")


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Yields a binary handle whose content replaces ``target`` when the block ends without error.

    The parent folder is created if needed. The partial file is created like any other (its mode
    follows the umask) and removed if the block raises, so ``target`` keeps its old content or
    stays absent.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _sibling(target, "partial", ".tmp")
    try:
        with open(partial, "xb") as handle:
            yield handle
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(target: Path, if_exists: IfExists = "fail") -> Iterator[Path]:
    """Yields an empty staging folder that becomes ``target`` when the block ends without error.

    The staging folder is hidden beside ``target`` and removed whatever happens, so an error or
    a lost race leaves nothing behind. A missing or empty ``target`` is replaced in one rename;
    one that holds files (a concurrent writer finished first) is, by ``if_exists``:

    - ``replace``: retired and swapped for the new folder (for a moment there is no ``target``);
    - ``keep``: left as it is, and the new folder discarded;
    - ``fail``: left as it is, and FileExistsError raised.

    Raises:
        FileExistsError: ``target`` holds files and ``if_exists`` is ``fail``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(target, "partial")
    staging.mkdir()
    try:
        yield staging
        _publish(staging, target, if_exists)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, target: Path, if_exists: IfExists) -> None:
    try:
        os.rename(staging, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if if_exists == "fail":
        raise FileExistsError(f"{target} already exists")
    if if_exists == "keep":
        return
    retired = _sibling(target, "old")
    retired.mkdir()
    try:
        os.rename(target, retired / target.name)
        os.rename(staging, target)
    finally:
        shutil.rmtree(retired, ignore_errors=True)
