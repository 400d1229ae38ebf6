"""Kept images, addressed by the sha256 of their bytes, on any fsspec file system (an adapter).

The bytes are the client's original upload, stored once however often they arrive, at
``<root>/<sha[:2]>/<sha>`` (two hex characters spread the files over 256 folders). The root is
a local folder by default and any fsspec URL otherwise (``file://``, ``memory://``, ``s3://``
with s3fs installed).
"""

from __future__ import annotations

import hashlib
import re
import secrets

import fsspec

SHA = re.compile(r"[0-9a-f]{64}")


class ImageStore:
    """Content-addressed image bytes. Writes are atomic and idempotent, so any number of
    processes may put the same image at once and a reader never sees part of one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def path(self, sha: str) -> str:
        """Where ``sha`` lives under the root.

        Raises:
            ValueError: ``sha`` is not 64 lowercase hex digits (it could point outside the root).
        """
        if not SHA.fullmatch(sha):
            raise ValueError(f"not a sha256 hex digest: {sha!r}")
        return f"{self.root.rstrip('/')}/{sha[:2]}/{sha}"

    def put(self, data: bytes) -> str:
        """Stores ``data`` unless it is there already; returns its sha256."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if self.fs.exists(target):
            return sha
        folder = target.rpartition("/")[0]
        self.fs.makedirs(folder, exist_ok=True)
        # Written under a hidden name and moved into place: a rename is atomic on a local file
        # system, and an object store publishes an object whole, so readers see all or nothing.
        partial = f"{folder}/.{sha}.{secrets.token_hex(4)}.partial"
        try:
            self.fs.pipe_file(partial, data)
            self.fs.mv(partial, target)
        finally:
            if self.fs.exists(partial):
                self.fs.rm(partial)
        return sha

    def get(self, sha: str) -> bytes:
        """The bytes of ``sha``.

        Raises:
            FileNotFoundError: no image has that sha (never kept, or expired).
        """
        try:
            return self.fs.cat_file(self.path(sha))
        except FileNotFoundError:
            raise FileNotFoundError(f"no kept image {sha} under {self.url}") from None

    def exists(self, sha: str) -> bool:
        return self.fs.exists(self.path(sha))

    def delete(self, sha: str) -> bool:
        """Deletes ``sha``; False when it was not there."""
        try:
            self.fs.rm_file(self.path(sha))
        except FileNotFoundError:
            return False
        return True
