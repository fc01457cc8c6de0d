"""A pool's metrics() when no member is live (docs/resilience.md §2, §7):
before start(), while its server is unreachable, after close(). Every key
of a member's metrics() is there, the present ones (connections, the
offline queue, the response cache) at 0 and the counters where they got,
as in Node (js-client/test/pool.test.js)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient
from ipc_client.pool_metrics import fold_retired, sum_metrics, zero_counters

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


def test_a_pool_s_means_cover_the_members_it_closed() -> None:
    """A closed member's mean is kept as its total (mean x count) and
    weighed in, as Node's sumMetrics does: the mean of every connection the
    pool had. Before, a pool averaged its live members only (40 and 300
    below) and reported 0.0 once none was live, its connection_successes
    still counting the closed ones."""
    retired = zero_counters(IPCClient("app", "127.0.0.1", 1).metrics())
    fold_retired(retired, {"connection_successes": 1, "average_connection_duration_ms": 10.0, "reconnections": 1, "average_reconnection_time_ms": 100.0})
    live = {"connection_successes": 2, "average_connection_duration_ms": 40.0, "reconnections": 3, "average_reconnection_time_ms": 300.0}
    both = sum_metrics([live], retired, 1)
    assert (both["average_connection_duration_ms"], both["average_reconnection_time_ms"]) == (30.0, 250.0)
    closed = sum_metrics([], retired, 0)
    assert (closed["average_connection_duration_ms"], closed["average_reconnection_time_ms"]) == (10.0, 100.0)
    fold_retired(retired, {"connection_successes": 2, "average_connection_duration_ms": 0.5, "reconnections": 0, "average_reconnection_time_ms": 0.0})
    # (10 + 2 x 0.5) / 3 = 3.666..., to 3 decimals as a client's mean (and Node's) is
    assert sum_metrics([], retired, 0)["average_connection_duration_ms"] == 3.667


async def test_the_mean_connection_duration_counts_members_it_closed_and_outlives_close(server) -> None:
    """The probe's case over real sockets: two members lost and replaced,
    then close(). The pool's mean is its four connections' mean, as each
    member's own metrics() says, live, and after close() (before: the live
    members' only, then 0.0)."""
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        pool = ConnectionPool("app", "127.0.0.1", proxy.port, min_connections=2, max_connections=2, initial_delay=0.01)
        try:
            await pool.start()
            members = [m.client for m in pool._members]
            proxy.cut()
            await until(lambda: pool.stats()["total_destroyed"] == 2 and pool.stats()["total"] == 2 and pool.metrics()["connection_successes"] == 4)
            members += [m.client for m in pool._members]
            before = expected_mean(members)  # the live members' lifetimes grow as we read
            live = pool.metrics()["average_connection_duration_ms"]
            assert before - 0.001 <= live <= expected_mean(members) + 0.001
        finally:
            await pool.close()
        closed = pool.metrics()
        assert closed["connection_successes"] == 4 and closed["active_connections"] == 0
        assert closed["average_connection_duration_ms"] == pytest.approx(expected_mean(members), abs=0.001) and closed["average_connection_duration_ms"] > 0


def expected_mean(clients: list[IPCClient]) -> float:
    """The mean lifetime of these clients' connections, from their own metrics()."""
    snaps = [c.metrics() for c in clients]
    count = sum(s["connection_successes"] for s in snaps)
    return sum(s["average_connection_duration_ms"] * s["connection_successes"] for s in snaps) / count


async def test_the_totals_never_dip_while_a_member_is_retired(server) -> None:
    """An idle member reaped: its counters stay in metrics() while it
    disconnects, until folded into the retired sum (before: messages_sent
    10 -> 5 -> 10 while its disconnect() ran)."""
    server.add_handler("echo", lambda msg: msg.payload)
    pool = ConnectionPool("app", "127.0.0.1", server.port, min_connections=1, max_connections=2, idle_timeout=0.05)
    try:
        await pool.start()
        async with pool.connection() as a, pool.connection() as b:
            assert a is not b
            for i in range(5):
                assert (await a.request("echo", i), await b.request("echo", i)) == (i, i)
        sent = pool.metrics()["messages_sent"]
        assert sent >= 10 and pool.stats()["total"] == 2
        seen: list[int] = []
        async with asyncio.timeout(5):
            while not (pool.stats()["total"] == 1 and pool.stats()["total_destroyed"] == 1 and not pool._tasks):
                seen.append(pool.metrics()["messages_sent"])
                await asyncio.sleep(0)  # every step of the reap, its disconnect included
        assert seen and min(seen) == sent and pool.metrics()["messages_sent"] == sent
    finally:
        await pool.close()
