"""ConnectionPool's own calls and registrations against a real server on
loopback (docs/resilience.md §7), as the Node pool makes them
(js-client/test/pool_calls.test.js): errors with their codes, deadlines
that have passed, calls on shared members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool
from ipc_protocol import AlreadyServing, Message, RequestTimeout

from .conftest import WAIT_S


@pytest.fixture
async def make_pool(server) -> AsyncIterator[Callable[..., Any]]:
    pools: list[ConnectionPool] = []

    async def make(**kwargs: Any) -> ConnectionPool:
        pool = ConnectionPool("app", "127.0.0.1", server.port, **kwargs)
        pools.append(pool)
        await pool.start()
        return pool

    yield make
    for p in pools:
        await p.close()


async def test_serving_a_served_channel_again_raises_already_serving(make_pool, make_client) -> None:
    """As IPCClient.serve(): a plain ValueError without a code before."""
    pool = await make_pool()
    assert await pool.serve("twice", lambda msg: 1)
    with pytest.raises(AlreadyServing) as caught:
        await pool.serve("twice", lambda msg: 2)
    assert caught.value.code == "already_serving"
    other = await make_client()
    assert await other.request("twice") == 1  # the first one still answers
    await pool.unserve("twice")
    assert await pool.serve("twice", lambda msg: 3)
    assert await other.request("twice") == 3


@pytest.mark.parametrize("timeout", [0, -1, 0.0, -1e-9])
async def test_a_deadline_already_passed_fails_the_call_before_it_is_sent(server, make_pool, timeout: float) -> None:
    """As IPCClient, system(), the load balancer and the service client: a
    timeout of zero or less is a deadline already passed (ipc_client/timeouts.py).
    Before, timeout=0 was answered and timeout=-1 sent with a 1 ms budget."""
    ran: list[Any] = []

    def count(msg: Message) -> Any:
        ran.append(msg.payload)
        return msg.payload

    server.add_handler("count", count)
    pool = await make_pool()
    for call in (pool.request, pool.send_request, pool.notify, pool.publish):
        with pytest.raises(RequestTimeout):
            await call("count", "late", timeout=timeout)
    assert await pool.request("count", "now") == "now"  # after them on the wire, had they been sent
    assert ran == ["now"]
    assert pool.stats()["in_use"] == 0


async def test_calls_share_members_as_the_load_balancer_does(server, make_pool) -> None:
    """A client multiplexes: with one connection, calls through the pool run
    at once on it (they took it in turns, each one holding it alone)."""
    entered: list[int] = []
    all_in = asyncio.Event()

    async def gather(msg: Message) -> int:
        entered.append(msg.payload)
        if len(entered) == 5:
            all_in.set()
        await all_in.wait()  # answers once the five are in: one at a time, none ever would be
        return msg.payload

    server.add_handler("together", gather)
    pool = await make_pool(min_connections=1, max_connections=1, acquire_timeout=WAIT_S)
    results = await asyncio.wait_for(asyncio.gather(*(pool.request("together", i, timeout=WAIT_S) for i in range(5))), WAIT_S * 2)
    assert results == list(range(5))
    assert pool.stats()["total_created"] == 1 and pool.stats()["in_use"] == 0


@pytest.mark.parametrize("min_connections", [1, 2])
async def test_concurrent_coalesced_calls_run_the_handler_once(server, make_pool, min_connections: int) -> None:
    """As through IPCClient and the load balancer: a coalesced call joins an
    identical one in flight on any member (each took a member of its own,
    so the handler ran once per call)."""
    runs: list[Any] = []
    release = asyncio.Event()

    async def counted(msg: Message) -> int:
        runs.append(msg.payload)
        await release.wait()
        return len(runs)

    server.add_handler("counted", counted)
    pool = await make_pool(min_connections=min_connections, max_connections=10)
    calls = [asyncio.ensure_future(pool.request("counted", {"a": 1, "b": 2}, coalesce=True)) for _ in range(3)]
    async with asyncio.timeout(WAIT_S):
        while not runs:
            await asyncio.sleep(0.005)
    calls.append(asyncio.ensure_future(pool.request("counted", {"b": 2, "a": 1}, coalesce=True)))  # later, the same key
    await asyncio.sleep(0.05)  # time for a second run to start, were it sent
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == [1, 1, 1, 1]
    assert runs == [{"a": 1, "b": 2}]
    assert pool.metrics()["requests_coalesced"] == 3


async def test_health_check_pings_on_a_busy_member_and_reports_failures(server, make_pool) -> None:
    """As Node's pool.healthCheck(): {healthy, latency_ms}, with error (a code)."""
    pool = await make_pool(min_connections=1, max_connections=1)
    held = await pool.acquire()  # a ping needs no exclusive use
    health = await asyncio.wait_for(pool.health_check(), WAIT_S)
    assert health["healthy"] is True and health["latency_ms"] >= 0 and "error" not in health
    pool.release(held)
    with pytest.raises(ValueError):
        await pool.health_check(float("nan"))
    with pytest.raises(TypeError):
        await pool.health_check("1")  # type: ignore[arg-type]
    await pool.close()
    assert await pool.health_check() == {"healthy": False, "latency_ms": None, "error": "not_connected"}


async def test_health_check_of_an_unreachable_server_says_not_connected() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = ConnectionPool("app", "127.0.0.1", port, min_connections=0, connect_timeout=1)
    try:
        health = await asyncio.wait_for(pool.health_check(1.0), WAIT_S)
        assert health == {"healthy": False, "latency_ms": None, "error": "not_connected"}
    finally:
        await pool.close()


async def test_a_timed_out_call_names_its_own_timeout_not_what_was_left(server) -> None:
    """docs/resilience.md §4: a pool's or a load-balanced client's call that
    waited 0.2 s for a connection and then got no answer names its 0.5 s,
    as a lone client's (was: "within 0.299 s", the time left when it was
    sent). The proxy black-holes the path once connected: the answer is the
    client's own timeout, never the server's (which races it)."""
    from ipc_client import LoadBalancedClient

    from .faultproxy import FaultProxy

    loop = asyncio.get_running_loop()
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        pool = ConnectionPool("app", "127.0.0.1", proxy.port, min_connections=1, max_connections=1)
        lb = LoadBalancedClient("app", [("127.0.0.1", proxy.port)], health_check_interval=None)
        try:
            await pool.start()
            await lb.start()
            proxy.blackhole()
            for owner, target in ((pool, pool), (lb._pools[lb.servers[0]], lb)):
                held = await owner.acquire()
                loop.call_later(0.2, owner.release, held)
                started = loop.time()
                with pytest.raises(RequestTimeout, match=r"^no response on 'silent' within 0\.5 s$"):
                    await target.request("silent", 1, timeout=0.5)
                assert 0.45 <= loop.time() - started < WAIT_S
            first = asyncio.ensure_future(pool.request("silent", 2, timeout=WAIT_S, coalesce=True))
            async with asyncio.timeout(WAIT_S):
                while not len(pool._members[0].client._shared):  # in flight on the member, for the next identical call to join
                    await asyncio.sleep(0)
            with pytest.raises(RequestTimeout, match=r"^no response on 'silent' within 0\.3 s \(a coalesced call\)$"):
                await pool.request("silent", 2, timeout=0.3, coalesce=True)
            first.cancel()
        finally:
            proxy.blackhole(False)
            await pool.close()
            await lb.close()
