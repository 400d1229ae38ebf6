"""The learning loop's parts on their own: the sampler's caps, the writer's order and bound, the accuracy cache."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from serving_helpers import metric

from feedback.items import LabelRow
from feedback.sampling import SamplingPolicy
from serving.learning.metrics import LearningMetrics
from serving.learning.online import OnlineAccuracy
from serving.learning.sampler import Sampler
from serving.learning.writer import ReviewWriter

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

CONFIDENT = {"vehicle_type": {"label": "car", "probabilities": {"car": 0.9, "bus": 0.1}, "decision": "confident"}}
UNCERTAIN = {"vehicle_type": {"label": "car", "probabilities": {"car": 0.5, "bus": 0.5}, "decision": "uncertain"}}


def test_the_sampler_keeps_by_reason_within_the_caps_it_counts_between_refreshes():
    sampler = Sampler(SamplingPolicy(uniform_share=0.0, uncertain_share=1.0, drifted_share=1.0, max_per_hour=3))
    sampler.refresh(["night"], stored_last_hour=1, stored_total=1, as_of=time.time())
    assert sampler.choose(CONFIDENT, "day") == ((), None)
    assert sampler.choose(UNCERTAIN, "day") == (("uncertain",), None)
    assert sampler.choose(CONFIDENT, "night") == (("drifted",), None)
    assert sampler.choose(UNCERTAIN, "night") == ((), "hourly_cap")  # 1 stored + 2 kept here
    # The store's counts now include the two kept before the read; none was kept since.
    sampler.refresh([], stored_last_hour=2, stored_total=3, as_of=time.time())
    assert sampler.choose(UNCERTAIN, "night") == (("uncertain",), None)
    assert Sampler(SamplingPolicy(uniform_share=1.0), enabled=False).choose(UNCERTAIN, "day") == ((), None)
    total = Sampler(SamplingPolicy(uniform_share=1.0, max_total=5))
    total.refresh([], stored_last_hour=0, stored_total=5, as_of=time.time())
    assert total.choose(CONFIDENT, "day") == ((), "total_cap")


async def test_the_writer_keeps_order_bounds_its_bytes_and_finishes_on_close():
    writer = ReviewWriter(max_bytes=100)
    gate, done = threading.Event(), []
    assert writer.keep(60, lambda: (gate.wait(10), done.append("first")))
    assert not writer.keep(50, lambda: done.append("refused"))  # 60 + 50 bytes would wait: dropped
    assert writer.keep(40, lambda: done.append("second"))
    later = writer.run(lambda: done.append("label") or len(done))
    gate.set()
    assert await later == 3  # after everything queued before it
    assert writer.keep(100, lambda: (time.sleep(0.2), done.append("last")))
    await writer.close()
    assert done == ["first", "second", "label", "last"] and writer.queued_bytes == 0
    assert not writer.keep(1, lambda: done.append("after close"))


def test_online_accuracy_is_recomputed_after_a_label_stored_during_a_read():
    registry = CollectorRegistry()
    metrics = LearningMetrics(registry)
    online = OnlineAccuracy(metrics, max_age=3600)
    row = LabelRow(
        "a", {"color": "red"}, "feedback", "c", 0.0, {"color": "red"}, 0.0, "eu", "c", "m", "1", False, False
    )
    assert online.stale("1")
    started = time.monotonic()
    online.invalidate()  # a label lands while the rows are being read
    online.update([row], "1", started)
    assert online.stale("1"), "the label stored during the read is not in these numbers"
    online.update([row], "1", time.monotonic())
    assert not online.stale("1") and online.stale("2")
    assert online.regions["eu"]["accuracy"] == {"color": 1.0}
    assert metric(generate_latest(registry).decode(), "vehicle_online_accuracy", region="eu", attribute="color") == 1
    online.update([], "1", time.monotonic())
    assert online.regions == {}
    assert "vehicle_online_accuracy{" not in generate_latest(registry).decode()  # the region's series is gone
