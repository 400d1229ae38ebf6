"""Inference batching: requests waiting together share one model call, and each gets its own answer."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from serving_helpers import unique_png

from serving.model.batching import BatchingExecutor
from serving.model.runtime import decode_and_predict
from vehicle_model.featurizer import FEATURE_DIM
from vehicle_model.images import ImageDecodeError, ImageLimits
from vehicle_model.model import VehicleClassifier
from vehicle_model.records import Prediction

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


class RecordingClassifier(VehicleClassifier):
    """The real classifier, noting how many images each model call received."""

    def __init__(self, classifier: VehicleClassifier) -> None:
        super().__init__(classifier.featurizer, classifier.heads, classifier.policy)
        self.calls: list[int] = []

    def predict_features(self, features: np.ndarray) -> list[Prediction]:
        self.calls.append(len(features))
        return super().predict_features(features)


async def _hold_the_only_thread(executor: BatchingExecutor) -> tuple[threading.Event, asyncio.Task]:
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(timeout=30)

    blocker = asyncio.create_task(executor.run(hold))
    await asyncio.to_thread(started.wait, 30)
    return release, blocker


async def test_requests_waiting_together_share_one_model_call_and_keep_their_own_answers(small_model):
    model = RecordingClassifier(small_model.classifier)
    executor = BatchingExecutor(threads=1, max_images=32)
    release, blocker = await _hold_the_only_thread(executor)
    requests = [[unique_png(i)] for i in range(4)] + [[unique_png(10), b"not an image", unique_png(11)]]
    calls = [asyncio.create_task(executor.predict(model, blobs, ImageLimits())) for blobs in requests]
    await asyncio.sleep(0.05)
    release.set()
    answers = await asyncio.gather(*calls)
    await blocker
    executor.close()

    assert model.calls == [4 + 2]  # one call for everything that waited; the bad file is not in it
    for blobs, inferred in zip(requests, answers, strict=True):
        expected = decode_and_predict(small_model.classifier, blobs, ImageLimits())
        assert len(inferred.results) == len(blobs)
        # Each request gets its own images' summaries and feature rows.
        assert inferred.summaries.shape == expected.summaries.shape
        assert inferred.features.shape == expected.features.shape == (len(expected.summaries), FEATURE_DIM)
        for got, want in zip(inferred.results, expected.results, strict=True):
            if isinstance(want, ImageDecodeError):
                assert isinstance(got, ImageDecodeError) and got.reason == want.reason
            else:
                assert _same_labels(got, want)


def _same_labels(got: Prediction, want: Prediction) -> bool:
    return all(got[a]["label"] == want[a]["label"] for a in want) and all(
        got[a]["probabilities"][c] == pytest.approx(p, abs=1e-5)
        for a in want
        for c, p in want[a]["probabilities"].items()
    )


async def test_one_request_alone_is_not_held_back(small_model):
    model = RecordingClassifier(small_model.classifier)
    executor = BatchingExecutor(threads=1, max_images=32)
    [answer] = (await executor.predict(model, [unique_png(20)], ImageLimits())).results
    executor.close()
    assert model.calls == [1] and set(answer) == {"vehicle_type", "color"}


async def test_a_batch_never_exceeds_the_image_limit_nor_mixes_models(small_model):
    old, new = RecordingClassifier(small_model.classifier), RecordingClassifier(small_model.classifier)
    executor = BatchingExecutor(threads=1, max_images=3)
    release, blocker = await _hold_the_only_thread(executor)
    jobs = [(old, 2), (old, 1), (old, 2), (new, 1), (old, 1)]
    calls = [
        asyncio.create_task(executor.predict(model, [unique_png(100 + 10 * i + k) for k in range(n)], ImageLimits()))
        for i, (model, n) in enumerate(jobs)
    ]
    await asyncio.sleep(0.05)
    release.set()
    answers = await asyncio.gather(*calls)
    await blocker
    executor.close()

    assert [len(a.results) for a in answers] == [n for _, n in jobs]
    assert max(old.calls) <= 3 and sum(old.calls) == 6 and new.calls == [1]


async def test_a_failing_call_fails_its_callers_and_the_thread_goes_on(small_model):
    executor = BatchingExecutor(threads=1)

    def boom() -> None:
        raise RuntimeError("backbone exploded")

    with pytest.raises(RuntimeError, match="backbone exploded"):
        await executor.run(boom)
    [answer] = (await executor.predict(small_model.classifier, [unique_png(30)], ImageLimits())).results
    executor.close()
    assert set(answer) == {"vehicle_type", "color"}


async def test_a_caller_that_gave_up_does_not_disturb_the_others(small_model):
    executor = BatchingExecutor(threads=1)
    release, blocker = await _hold_the_only_thread(executor)
    abandoned = asyncio.create_task(executor.predict(small_model.classifier, [unique_png(40)], ImageLimits()))
    kept = asyncio.create_task(executor.predict(small_model.classifier, [unique_png(41)], ImageLimits()))
    await asyncio.sleep(0.05)
    abandoned.cancel()
    release.set()
    [answer] = (await kept).results
    await blocker
    executor.close()
    assert abandoned.cancelled() and set(answer) == {"vehicle_type", "color"}


async def test_close_lets_queued_work_finish_then_stops_the_threads(small_model):
    executor = BatchingExecutor(threads=1)
    release, blocker = await _hold_the_only_thread(executor)
    queued = asyncio.create_task(executor.predict(small_model.classifier, [unique_png(50)], ImageLimits()))
    await asyncio.sleep(0.05)
    executor.close()
    release.set()
    [answer] = (await queued).results
    await blocker
    for thread in executor._threads:
        await asyncio.to_thread(thread.join, 30)
    assert set(answer) == {"vehicle_type", "color"}
    assert not any(thread.is_alive() for thread in executor._threads)


async def test_several_threads_share_the_waiting_requests(small_model):
    model = RecordingClassifier(small_model.classifier)
    executor = BatchingExecutor(threads=2, max_images=32)
    started, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        started.wait(timeout=30)
        release.wait(timeout=30)

    blockers = [asyncio.create_task(executor.run(hold)) for _ in range(2)]
    await asyncio.to_thread(started.wait, 30)  # both threads busy
    calls = [asyncio.create_task(executor.predict(model, [unique_png(60 + i)], ImageLimits())) for i in range(8)]
    await asyncio.sleep(0.05)
    release.set()
    answers = await asyncio.gather(*calls)
    await asyncio.gather(*blockers)
    executor.close()
    assert all(len(a.results) == 1 for a in answers)
    assert sum(model.calls) == 8 and max(model.calls) <= 4  # no thread took more than half


async def test_a_call_made_alone_runs_on_the_wide_model_and_one_beside_another_on_its_share(small_model):
    narrow, wide = RecordingClassifier(small_model.classifier), RecordingClassifier(small_model.classifier)
    executor = BatchingExecutor(threads=2, max_images=32)
    [alone] = (await executor.predict(narrow, [unique_png(300)], ImageLimits(), wide=wide)).results
    assert (narrow.calls, wide.calls) == ([], [1])

    release, blocker = await _hold_the_only_thread(executor)  # one of the two threads is now busy
    [beside] = (await executor.predict(narrow, [unique_png(301)], ImageLimits(), wide=wide)).results
    release.set()
    await blocker
    executor.close()
    assert (narrow.calls, wide.calls) == ([1], [1])
    assert alone == decode_and_predict(small_model.classifier, [unique_png(300)], ImageLimits()).results[0]
    assert beside == decode_and_predict(small_model.classifier, [unique_png(301)], ImageLimits()).results[0]
