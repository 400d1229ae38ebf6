"""One thread that writes to the label and image stores, in the order the work was given.

Kept images (and their items) are written here, off the request path: ``keep`` only queues
them and returns at once, and refuses when the image bytes already waiting exceed the bound
(the caller counts the drop), so a slow disk or object store costs memory up to the bound and
never a request's time. Labels and reviews go through the same thread because order matters:
feedback on a kept image must find its item written first. On shutdown everything queued is
written before the thread ends, so nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger("serving.learning")


class ReviewWriter:
    """A single writer thread with a bound on the image bytes waiting for it.

    Args:
        max_bytes: most image bytes queued at once; ``keep`` refuses beyond it.
        on_failure: called when a queued write raised (it is logged, never retried).
    """

    def __init__(self, max_bytes: int, on_failure: Callable[[], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self._on_failure = on_failure or (lambda: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-writer")
        self._lock = threading.Lock()
        self._queued_bytes = 0

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def keep(self, size: int, write: Callable[[], object]) -> bool:
        """Queues ``write`` (holding ``size`` image bytes); False, and nothing queued, when full."""
        with self._lock:
            if self._queued_bytes + size > self.max_bytes:
                return False
            self._queued_bytes += size
        try:
            self._executor.submit(self._write, size, write)
        except RuntimeError:  # shut down: the app is stopping
            self._release(size)
            return False
        return True

    async def run(self, call: Callable[[], T]) -> T:
        """Runs ``call`` on the writer thread after everything queued before it; its result."""
        return await asyncio.wrap_future(self._executor.submit(call))

    async def close(self) -> None:
        """Writes everything queued, then ends the thread."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _write(self, size: int, write: Callable[[], object]) -> None:
        try:
            write()
        except Exception:  # a failed write must not stop the writer for the next ones
            logger.exception("writing a kept image for review failed")
            self._on_failure()
        finally:
            self._release(size)

    def _release(self, size: int) -> None:
        with self._lock:
            self._queued_bytes -= size
