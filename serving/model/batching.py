"""Inference threads that batch the requests waiting for them into one model call.

A request's images join a queue; an idle inference thread takes the first job and every
prediction job behind it for the same model snapshot (up to ``max_images`` images), runs them
as one batch and hands each request its share. Nobody waits for company. Under load the
per-call costs (thread handoffs, backbone dispatch, head input checks) are paid once per
batch instead of once per request, and with several threads each takes an equal share of the
requests waiting, on its share of the cores. A call that finds the other threads idle and
nobody waiting runs on the job's ``wide`` classifier instead (every core), so a lone request,
or a lone classify-batch, does not leave cores idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from serving.model.runtime import Inferred, decode_and_predict
from vehicle_model.images import ImageDecodeError, ImageLimits
from vehicle_model.model import VehicleClassifier

T = TypeVar("T")
_STOP = object()  # queued once per thread by ``close``


@dataclass
class _Job:
    """One caller's work and the future that receives its result."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    call: Callable[[], Any] | None = None  # any blocking call, run alone
    classifier: VehicleClassifier | None = None  # or images to predict, batchable
    wide: VehicleClassifier | None = None  # the same model on every core, for a call made alone
    limits: ImageLimits | None = None
    blobs: Sequence[bytes] = field(default_factory=list)

    def batches_with(self, other: _Job) -> bool:
        return other.call is None and other.classifier is self.classifier and other.limits == self.limits


class BatchingExecutor:
    """``threads`` inference threads fed by one queue; prediction jobs are batched.

    Args:
        threads: inference threads (each model call uses the ONNX threads its model has).
        max_images: most images in one batched call.
    """

    def __init__(self, threads: int = 1, max_images: int = 32) -> None:
        self.max_images = max_images
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._count = threads
        self._threads: list[threading.Thread] = []  # started by the first job, like a ThreadPoolExecutor
        self._busy = 0  # threads inside a call
        self._busy_lock = threading.Lock()

    async def predict(
        self,
        classifier: VehicleClassifier,
        blobs: Sequence[bytes],
        limits: ImageLimits,
        wide: VehicleClassifier | None = None,
    ) -> Inferred:
        """``decode_and_predict`` over ``blobs``, possibly in one call with other requests' images.

        ``wide`` (the same model on every core) is used when the call runs alone. The answer
        holds this caller's share only: its blobs' results, features and summaries.
        """
        return await self._submit(classifier=classifier, blobs=blobs, limits=limits, wide=wide)

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """Runs any blocking call on an inference thread, by itself."""
        return await self._submit(call=lambda: call(*args))

    def close(self) -> None:
        """Lets the threads finish the jobs already queued, then stop."""
        for _ in self._threads:
            self._queue.put(_STOP)

    async def _submit(self, **work: Any) -> Any:
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._work, name=f"inference-{i}", daemon=True) for i in range(self._count)
            ]
            for thread in self._threads:
                thread.start()
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), **work)
        self._queue.put(job)
        return await job.future

    def _work(self) -> None:
        carried: _Job | object | None = None
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is _STOP:
                return
            assert isinstance(job, _Job)
            if job.call is not None:
                with self._inside():
                    self._settle([job], job.call)
                continue
            # With several threads, each takes its share of the queue: one thread holding every
            # waiting request while another idles would double the slowest request's wait.
            share = -(-(self._queue.qsize() + 1) // len(self._threads))
            batch, images = [job], len(job.blobs)
            while len(batch) < share and images < self.max_images:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP or not job.batches_with(more) or images + len(more.blobs) > self.max_images:
                    carried = more  # first in line for this thread's next round
                    break
                batch.append(more)
                images += len(more.blobs)
            with self._inside(carrying=carried is not None) as alone:
                classifier = job.wide if alone and job.wide is not None else job.classifier
                self._settle(batch, lambda classifier=classifier, batch=batch: self._predict(classifier, batch))

    @contextlib.contextmanager
    def _inside(self, carrying: bool = False) -> Iterator[bool]:
        """Counts this thread as busy; yields whether it is alone (no other call, nobody waiting)."""
        with self._busy_lock:
            alone = self._busy == 0 and self._queue.empty() and not carrying
            self._busy += 1
        try:
            yield alone
        finally:
            with self._busy_lock:
                self._busy -= 1

    @staticmethod
    def _predict(classifier: VehicleClassifier, batch: list[_Job]) -> list[Inferred]:
        head = batch[0]
        inferred = decode_and_predict(classifier, [blob for job in batch for blob in job.blobs], head.limits)
        shares, start, row = [], 0, 0  # features and summaries exist for predicted images only
        for job in batch:
            results = inferred.results[start : start + len(job.blobs)]
            end = row + sum(not isinstance(r, ImageDecodeError) for r in results)
            rows = slice(row, end)
            shares.append(Inferred(results, inferred.features[rows], inferred.summaries[rows], inferred.ms_per_image))
            start, row = start + len(job.blobs), end
        return shares

    @staticmethod
    def _settle(batch: list[_Job], call: Callable[[], Any]) -> None:
        try:
            outcome = call()
        except BaseException as exc:  # handed to the callers, who see it as their own
            for job in batch:
                _deliver(job, exc, failed=True)
            return
        values = outcome if batch[0].call is None else [outcome]  # a batch gets one share per job
        for job, value in zip(batch, values, strict=True):
            _deliver(job, value)


def _deliver(job: _Job, value: Any, failed: bool = False) -> None:
    def settle() -> None:
        if job.future.done():  # the caller gave up (client disconnected, request cancelled)
            return
        if failed:
            job.future.set_exception(value)
        else:
            job.future.set_result(value)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting
        pass
