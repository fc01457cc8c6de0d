"""A pool's metrics() when no member is live (docs/resilience.md §2, §7):
before start(), while its server is unreachable, after close(). Every key
of a member's metrics() is there, the present ones (connections, the
offline queue, the response cache) at 0 and the counters where they got,
as in Node (js-client/test/pool_metrics.test.js)."""

from __future__ import annotations

from typing import Any

from ipc_client import ConnectionPool, IPCClient

from .faultproxy import FaultProxy
from .test_pool import until

LIVE_ONLY = ("active_connections", "queued", "queued_bytes", "cache_size")


def check(metrics: dict[str, Any], *, active: int = 0) -> None:
    assert set(metrics) == set(IPCClient("app", "127.0.0.1", 1).metrics()), sorted(metrics)
    assert {k: metrics[k] for k in LIVE_ONLY} == dict.fromkeys(LIVE_ONLY, 0) | {"active_connections": active}


async def test_every_key_is_reported_whether_or_not_a_member_is_live(server) -> None:
    server.add_handler("echo", lambda msg: msg.payload)
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        pool = ConnectionPool("app", "127.0.0.1", proxy.port, min_connections=1, initial_delay=5, max_delay=5)
        try:
            check(pool.metrics())  # before start()
            assert pool.metrics()["messages_delivered"] == 0
            await pool.start()
            assert await pool.request("echo", 1) == 1
            check(pool.metrics(), active=1)
            proxy.refuse()
            proxy.cut()
            await until(lambda: pool.stats()["total"] == 0)
            down = pool.metrics()  # the server unreachable: no member
            check(down)
            assert down["messages_delivered"] == 1  # the counters stay
        finally:
            await pool.close()
        closed = pool.metrics()
        check(closed)
        assert closed["messages_delivered"] == 1
