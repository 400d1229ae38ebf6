"""Behind a proxy the rate limit counts per real client, in Redis, across replicas.

Requests come from 127.0.0.1 (standing in for the proxy) with ``X-Forwarded-For`` naming the
client. Replicas that trust 127.0.0.1 as a proxy share one counter per client through Redis;
a replica that does not trust it counts every request against the proxy's address.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from conftest import Stack
from e2e_support import free_port, tail

pytestmark = pytest.mark.stack

LIMIT = 4
LIMITED = "/api/stats/regions"  # rate limited, and answers without a model


def start_replica(stack: Stack, prefix: str, trusted: str) -> str:
    port = free_port()
    process, log = stack.sandbox.start(
        [stack.sandbox.command("vehicles"), "serve", "--port", str(port)],
        env={
            "MLFLOW_TRACKING_URI": stack.mlflow_uri,
            "REDIS_URL": stack.redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "RATE_LIMIT_PER_MINUTE": str(LIMIT),
            "TRUSTED_PROXIES": trusted,
            "INFERENCE_THREADS": "1",
        },
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"replica exited:\n{tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"replica did not answer:\n{tail(log)}")


@pytest.fixture(scope="module")
def replicas(stack: Stack) -> dict[str, list[str]]:
    prefix = f"ratelimit-{uuid.uuid4().hex[:8]}"
    return {
        "behind_proxy": [start_replica(stack, prefix, "127.0.0.1"), start_replica(stack, prefix, "127.0.0.1")],
        "untrusted": [start_replica(stack, f"{prefix}-untrusted", "192.0.2.1")],
    }


def statuses(urls: list[str], client: str, count: int) -> list[int]:
    """Status codes of ``count`` requests for ``client``, round-robin over ``urls``."""
    return [
        httpx.get(
            f"{urls[i % len(urls)]}{LIMITED}", headers={"X-Forwarded-For": client}, timeout=10, trust_env=False
        ).status_code
        for i in range(count)
    ]


def test_limit_counts_the_forwarded_client_across_replicas(replicas: dict[str, list[str]]):
    both = replicas["behind_proxy"]

    assert statuses(both, "203.0.113.7", LIMIT + 1) == [200] * LIMIT + [429]
    assert statuses(both, "203.0.113.8", 2) == [200, 200]


def test_forwarded_header_from_an_untrusted_peer_is_ignored(replicas: dict[str, list[str]]):
    [untrusted] = replicas["untrusted"]
    codes = [statuses([untrusted], f"198.51.100.{i}", 1)[0] for i in range(LIMIT + 1)]

    assert codes == [200] * LIMIT + [429]
