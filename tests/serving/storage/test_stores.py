"""The bounded memory store and the resilient store without Redis."""

from __future__ import annotations

import pytest

from serving.storage.stores import BoundedMemoryStore, RedisGuard, ResilientStore

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]


async def test_bounded_memory_store_evicts_least_recently_used_and_expires():
    store = BoundedMemoryStore(max_items=2)
    await store.set("a", b"1")
    await store.set("b", b"2")
    await store.get("a")
    await store.set("c", b"3")
    assert await store.get("b") is None and await store.get("a") == b"1" and await store.get("c") == b"3"
    await store.set("short", "x", expires_in=-1)
    assert await store.get("short") is None and not await store.exists("short")


async def test_resilient_store_without_redis_is_a_memory_store():
    guard = RedisGuard(None)
    store = ResilientStore(guard, "ns", max_items=10)
    await store.set("k", "v", expires_in=30)
    assert guard.state == "memory"
    assert await store.get("k") == b"v" and 0 < await store.expires_in("k") <= 30
    await store.delete("k")
    assert await store.get("k") is None
    # Without Redis, memory is the whole truth: a miss is an answer, not "Redis unavailable".
    assert await store.lookup("k") is None
    await store.set("k", "again")
    assert await store.lookup("k") == b"again"
