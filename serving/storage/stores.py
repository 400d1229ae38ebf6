"""Key/value stores that keep working when Redis does not.

``RedisGuard`` is a circuit breaker around one Redis client: after a failure it sends every
caller to memory for ``retry_after`` seconds instead of letting each request pay a timeout,
then lets the next call try Redis again (redis-py reconnects by itself). ``ResilientStore``
is a Litestar ``Store`` over Litestar's ``RedisStore`` that falls back to a bounded in-memory
store, so reports, the classification cache and rate limits share one behaviour.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal, TypeVar

from litestar.stores.base import NamespacedStore, StorageObject, Store
from litestar.stores.redis import RedisStore
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

T = TypeVar("T")
RedisState = Literal["ok", "degraded", "memory"]
logger = logging.getLogger("serving.redis")


class RedisUnavailable(Exception):
    """Redis is not configured, or the breaker is open, or the call just failed."""


def redis_client(url: str, timeout_seconds: float, max_connections: int = 16) -> Redis:
    """A client that fails fast (one socket timeout, no retries of its own) on a bounded pool.

    redis-py's default pool opens a connection for every concurrent command and keeps it, so
    open sockets creep up with each new concurrency peak. Here callers beyond
    ``max_connections`` wait for a free one; connections come back within one command, or
    within ``timeout_seconds`` when Redis hangs, so the wait is bounded by twice that.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=2 * timeout_seconds,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)


class RedisGuard:
    """Circuit breaker in front of a Redis client (or of no client: memory mode).

    Args:
        redis: the client; None when no Redis is configured.
        retry_after: seconds to skip Redis after a failure.
        on_change: called with True/False when Redis comes back / goes away.
    """

    def __init__(
        self, redis: Redis | None, retry_after: float = 5.0, on_change: Callable[[bool], None] | None = None
    ) -> None:
        self.redis = redis
        self.retry_after = retry_after
        self._on_change = on_change or (lambda up: None)
        self._open_until = 0.0
        self._up = redis is not None
        self._on_change(self._up)

    @property
    def state(self) -> RedisState:
        if self.redis is None:
            return "memory"
        return "ok" if self._up else "degraded"

    async def run(self, operation: Callable[[Redis], Awaitable[T]], force: bool = False) -> T:
        """Runs ``operation(redis)``; raises RedisUnavailable instead of any Redis failure.

        With ``force`` Redis is asked even while the breaker is open (one timeout at most):
        for callers that cannot answer from memory alone.
        """
        if self.redis is None or (not force and time.monotonic() < self._open_until):
            raise RedisUnavailable
        try:
            result = await operation(self.redis)
        except (TimeoutError, RedisError, OSError) as exc:
            self._trip(exc)
            raise RedisUnavailable from exc
        if not self._up:
            self._up = True
            self._open_until = 0.0
            logger.info("redis is reachable again; leaving the in-memory fallback")
            self._on_change(True)
        return result

    async def probe(self) -> RedisState:
        """Pings Redis unless the breaker is open; returns the resulting state."""
        try:
            await self.run(lambda redis: redis.ping())
        except RedisUnavailable:
            pass
        return self.state

    def _trip(self, exc: BaseException) -> None:
        self._open_until = time.monotonic() + self.retry_after
        if self._up:
            self._up = False
            logger.warning(
                "redis unavailable (%s); using the in-memory fallback, retrying in %.1f s",
                type(exc).__name__,
                self.retry_after,
            )
            self._on_change(False)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose(close_connection_pool=True)


class BoundedMemoryStore(Store):
    """In-memory store holding at most ``max_items`` keys, least recently used evicted first."""

    __slots__ = ("_items", "max_items")

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, StorageObject] = OrderedDict()

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        data = value.encode("utf-8") if isinstance(value, str) else value
        self._items[key] = StorageObject.new(data=data, expires_in=expires_in)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        item = self._live(key)
        if item is None:
            return None
        if renew_for and item.expires_at:
            item = self._items[key] = StorageObject.new(data=item.data, expires_in=renew_for)
        self._items.move_to_end(key)
        return item.data

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def delete_all(self) -> None:
        self._items.clear()

    async def exists(self, key: str) -> bool:
        return self._live(key) is not None

    async def expires_in(self, key: str) -> int | None:
        item = self._live(key)
        return None if item is None else item.expires_in

    def _live(self, key: str) -> StorageObject | None:
        item = self._items.get(key)
        if item is not None and item.expired:
            del self._items[key]
            return None
        return item


class ResilientStore(NamespacedStore):
    """Redis while it answers, a bounded in-memory store otherwise.

    Values written to memory during an outage stay readable after Redis returns (a miss in
    Redis falls through to memory), so a report created during an outage is not lost.

    Args:
        guard: the shared Redis circuit breaker.
        namespace: key prefix in Redis (``<namespace>:<key>``).
        max_items: bound of the in-memory fallback.
    """

    __slots__ = ("_memory", "_redis_store", "guard", "max_items")

    def __init__(self, guard: RedisGuard, namespace: str, max_items: int = 10_000) -> None:
        self.guard = guard
        self.namespace = namespace
        self.max_items = max_items
        self._memory = BoundedMemoryStore(max_items)
        self._redis_store = RedisStore(guard.redis, namespace=namespace) if guard.redis is not None else None

    def with_namespace(self, namespace: str) -> ResilientStore:
        return type(self)(self.guard, f"{self.namespace}_{namespace}", self.max_items)

    async def _redis(self, call: Callable[[RedisStore], Awaitable[T]]) -> T:
        store = self._redis_store
        if store is None:
            raise RedisUnavailable
        return await self.guard.run(lambda _: call(store))

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        try:
            await self._redis(lambda store: store.set(key, value, expires_in))
        except RedisUnavailable:
            await self._memory.set(key, value, expires_in)
        else:
            await self._memory.delete(key)

    async def add(self, key: str, value: str | bytes, expires_in: int) -> bool:
        """Stores ``value`` only if ``key`` holds nothing; False when it already does.

        One ``SET NX`` in Redis, so two writers racing for a key cannot both win. While Redis
        is away only the memory copy can be checked.
        """
        if await self._memory.exists(key):
            return False
        try:
            return bool(
                await self.guard.run(lambda redis: redis.set(f"{self.namespace}:{key}", value, ex=expires_in, nx=True))
            )
        except RedisUnavailable:
            await self._memory.set(key, value, expires_in)
            return True

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        try:
            value = await self._redis(lambda store: store.get(key, renew_for))
        except RedisUnavailable:
            value = None
        return value if value is not None else await self._memory.get(key, renew_for)

    async def lookup(self, key: str) -> bytes | None:
        """The value, or None only when Redis itself said the key is absent.

        Memory first (it holds what was written during an outage), then one Redis read made
        even while the breaker is open. Raises RedisUnavailable when memory misses and Redis
        could not answer: a miss in memory alone does not prove the key is absent.
        """
        value = await self._memory.get(key)
        if value is not None or self._redis_store is None:
            return value
        store = self._redis_store
        return await self.guard.run(lambda _: store.get(key), force=True)

    async def delete(self, key: str) -> None:
        await self._memory.delete(key)
        try:
            await self._redis(lambda store: store.delete(key))
        except RedisUnavailable:
            pass

    async def delete_all(self) -> None:
        await self._memory.delete_all()
        try:
            await self._redis(lambda store: store.delete_all())
        except RedisUnavailable:
            pass

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        try:
            ttl = await self._redis(lambda store: store.expires_in(key))
        except RedisUnavailable:
            ttl = None
        return ttl if ttl is not None else await self._memory.expires_in(key)
