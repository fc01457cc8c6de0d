"""ConnectionPool against a real server on loopback (docs/resilience.md §7):
sizing, FIFO waits with a deadline, dead members replaced, idle eviction,
registrations that survive the member carrying them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient
from ipc_protocol import HandlerError, Message, NotConnected, RequestTimeout

from .conftest import WAIT_S
from .faultproxy import FaultProxy


async def until(pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait (bounded) for a condition that a background task makes true."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def make_pool(server) -> AsyncIterator[Callable[..., Any]]:
    pools: list[ConnectionPool] = []

    async def make(port: int | None = None, *, start: bool = True, **kwargs: Any) -> ConnectionPool:
        pool = ConnectionPool("app", "127.0.0.1", port or server.port, **kwargs)
        pools.append(pool)
        if start:
            await pool.start()
        return pool

    yield make
    for p in pools:
        await p.close()


async def test_start_opens_min_connections_and_reuses_idle_members(make_pool) -> None:
    pool = await make_pool(min_connections=2, max_connections=4)
    assert pool.stats() == {"total": 2, "available": 2, "in_use": 0, "pending": 0, "total_created": 2, "total_destroyed": 0}
    a = await pool.acquire()
    assert a.connected and pool.stats()["in_use"] == 1
    pool.release(a)
    b = await pool.acquire()
    assert b is a  # the most recently used idle member
    pool.release(b)
    assert pool.stats()["total_created"] == 2
    with pytest.raises(ValueError):
        pool.release(b)  # twice
    assert "total=2" in repr(pool)


async def test_grows_to_max_then_waits_fifo_and_times_out(make_pool) -> None:
    pool = await make_pool(min_connections=0, max_connections=2, acquire_timeout=5)
    a, b = await pool.acquire(), await pool.acquire()
    assert a is not b and pool.stats()["total"] == 2
    order: list[str] = []

    async def wait(name: str) -> IPCClient:
        c = await pool.acquire()
        order.append(name)
        return c

    first = asyncio.ensure_future(wait("first"))
    await until(lambda: pool.stats()["pending"] == 1)
    second = asyncio.ensure_future(wait("second"))
    await until(lambda: pool.stats()["pending"] == 2)
    pool.release(a)
    got_first = await asyncio.wait_for(first, WAIT_S)
    assert got_first is a and not second.done()
    pool.release(b)
    assert await asyncio.wait_for(second, WAIT_S) is b
    assert order == ["first", "second"]

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout) as info:
        await pool.acquire(timeout=0.1)
    assert info.value.code == "timeout"
    assert "(2 of 2 in use; max_connections 2)" in info.value.message
    assert 0.09 <= loop.time() - started < 3.0
    assert pool.stats()["pending"] == 0
    pool.release(a)
    pool.release(b)
    assert pool.stats()["total_created"] == 2


async def test_an_acquire_timeout_with_opens_under_way_says_so(make_pool) -> None:
    """A listener that never answers the handshake: no member yet, two opens
    under way (the message said "2 in use")."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        pool = await make_pool(silent.sockets[0].getsockname()[1], start=False, min_connections=0, max_connections=2, connect_timeout=5)
        first = asyncio.ensure_future(pool.acquire(timeout=0.5))
        with pytest.raises(RequestTimeout) as info:
            await pool.acquire(timeout=0.2)
        assert "(none open, 2 opening; max_connections 2)" in info.value.message
        with pytest.raises(RequestTimeout):
            await first
    finally:
        for writer in held:
            writer.close()
        silent.close()


async def test_a_zero_timeout_takes_an_idle_member_and_only_waiting_times_out(make_pool) -> None:
    pool = await make_pool(min_connections=1, max_connections=1)
    client = await pool.acquire(timeout=0)
    assert client.connected
    with pytest.raises(RequestTimeout):
        await pool.acquire(timeout=0)
    assert pool.stats()["pending"] == 0
    pool.release(client)


async def test_a_failed_open_raises_not_connected_instead_of_waiting(make_pool) -> None:
    pool = await make_pool(free_port(), start=False, connect_timeout=2, acquire_timeout=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NotConnected):
        await pool.acquire()
    with pytest.raises(NotConnected):
        await pool.start()
    assert loop.time() - started < 5
    assert pool.stats()["total"] == 0


@pytest.mark.parametrize("option", ["reconnect", "wait_on_first_connect"])
def test_members_neither_reconnect_nor_wait_on_their_first_connect(option: str) -> None:
    with pytest.raises(ValueError, match="pool"):
        ConnectionPool("app", "127.0.0.1", 1, **{option: True})


async def test_a_failed_open_also_fails_the_waiter_given_its_slot(server, make_pool) -> None:
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        pool = await make_pool(proxy.port, min_connections=1, max_connections=1, acquire_timeout=30)
        held = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await until(lambda: pool.stats()["pending"] == 1)
        proxy.refuse(True)
        proxy.cut()  # the held member dies; its slot goes to the waiter, whose open fails
        await until(lambda: not held.connected)
        pool.release(held)
        with pytest.raises(NotConnected):
            await asyncio.wait_for(waiter, WAIT_S)
    finally:
        await proxy.close()


async def test_dead_members_are_destroyed_and_replaced(server, make_pool) -> None:
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        pool = await make_pool(proxy.port, min_connections=2, max_connections=3, initial_delay=0.01)
        lost: list[Any] = []
        pool.on("member_lost", lambda client, error: lost.append(error))
        held = await pool.acquire()
        proxy.cut()
        # The idle one is destroyed and replaced; the held one stays its holder's until released.
        await until(lambda: len(lost) == 2 and pool.stats()["total_created"] == 3)
        assert not held.connected
        assert pool.stats() == {"total": 2, "available": 1, "in_use": 1, "pending": 0, "total_created": 3, "total_destroyed": 1}
        pool.release(held)  # dead on release: destroyed
        await until(lambda: pool.stats()["available"] == 2 and pool.stats()["total"] == 2)
        s = pool.stats()
        assert s["total_created"] == 4 and s["total_destroyed"] == 2
        c = await pool.acquire()
        assert c.connected and c is not held
        pool.release(c)
    finally:
        await proxy.close()


async def test_a_held_member_that_dies_keeps_its_place_until_released(server, make_pool) -> None:
    # The same scenario and outcome as js-client/test/pool.test.js: a full pool times out.
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        pool = await make_pool(proxy.port, min_connections=1, max_connections=1, acquire_timeout=0.2)
        lost = asyncio.Event()
        pool.on("member_lost", lambda client, error: lost.set())
        held = await pool.acquire()
        proxy.cut()
        await asyncio.wait_for(lost.wait(), WAIT_S)
        assert not held.connected
        full = {"total": 1, "available": 0, "in_use": 1, "pending": 0, "total_created": 1, "total_destroyed": 0}
        assert pool.stats() == full  # not destroyed under its holder, nor replaced beside it
        with pytest.raises(RequestTimeout):
            await pool.acquire()
        assert pool.stats() == full
        nxt = asyncio.ensure_future(pool.acquire(WAIT_S))
        await until(lambda: pool.stats()["pending"] == 1)
        pool.release(held)  # closed now, and its replacement goes to the waiter
        fresh = await asyncio.wait_for(nxt, WAIT_S)
        assert fresh is not held and fresh.connected
        assert pool.stats() == {"total": 1, "available": 0, "in_use": 1, "pending": 0, "total_created": 2, "total_destroyed": 1}
        pool.release(fresh)
    finally:
        await proxy.close()


async def test_a_shared_member_that_dies_is_closed_when_its_last_lease_ends(server, make_pool) -> None:
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        pool = await make_pool(proxy.port, min_connections=1, max_connections=1)
        lost = asyncio.Event()
        pool.on("member_lost", lambda client, error: lost.set())
        async with pool.lease() as leased:
            proxy.cut()
            await asyncio.wait_for(lost.wait(), WAIT_S)
            assert (pool.stats()["in_use"], pool.stats()["total_destroyed"]) == (1, 0)
        assert pool.stats()["total_destroyed"] == 1
        await until(lambda: pool.stats()["available"] == 1)
        assert pool.stats()["total_created"] == 2
        assert not leased.connected
    finally:
        await proxy.close()


async def test_idle_members_above_min_are_closed(make_pool) -> None:
    pool = await make_pool(min_connections=1, max_connections=3, idle_timeout=0.05)
    clients = [await pool.acquire() for _ in range(3)]
    for c in clients:
        pool.release(c)
    await until(lambda: pool.stats()["total"] == 1)
    assert pool.stats()["total_destroyed"] == 2
    await until(lambda: sum(c.connected for c in clients) == 1)


async def test_close_fails_waiting_and_later_acquires(make_pool) -> None:
    pool = await make_pool(min_connections=1, max_connections=1)
    held = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire(timeout=30))
    await until(lambda: pool.stats()["pending"] == 1)
    await pool.close()
    with pytest.raises(NotConnected):
        await asyncio.wait_for(waiter, WAIT_S)
    with pytest.raises(NotConnected):
        await pool.acquire()
    assert not held.connected
    pool.release(held)  # harmless after close


async def test_execute_and_connection_release_even_on_error(server, make_pool) -> None:
    server.add_handler("boom", lambda msg: 1 / 0)
    server.add_handler("echo", lambda msg: msg.payload)
    pool = await make_pool(min_connections=1, max_connections=1)
    assert await pool.execute(lambda c: c.request("echo", 7)) == 7
    with pytest.raises(HandlerError):
        await pool.execute(lambda c: c.request("boom"))
    assert pool.stats()["in_use"] == 0
    with pytest.raises(KeyError):
        async with pool.connection():
            assert pool.stats()["in_use"] == 1
            raise KeyError("x")
    assert pool.stats()["available"] == 1


async def test_convenience_calls_run_on_a_member(server, make_pool) -> None:
    server.add_handler("echo", lambda msg: msg.payload)
    pool = await make_pool(min_connections=1, max_connections=4)
    results = await asyncio.gather(*(pool.request("echo", i) for i in range(20)))
    assert results == list(range(20))
    assert isinstance(await pool.send_request("echo", "x"), Message)
    assert await pool.publish("news", 1, ack=True) == 0
    await pool.notify("echo", 1)
    assert 1 <= pool.stats()["total"] <= 4 and pool.stats()["in_use"] == 0
    metrics = pool.metrics()
    assert metrics["active_connections"] == pool.stats()["total"]
    assert metrics["messages_delivered"] >= 22
    assert metrics["message_delivery_rate"] == 1.0


async def test_shared_leases_multiplex_and_grow_to_max(server, make_pool) -> None:
    release = asyncio.Event()

    async def slow(msg: Message) -> str:
        await release.wait()
        return "done"

    server.add_handler("slow", slow)
    pool = await make_pool(min_connections=1, max_connections=2)

    async def call() -> str:
        async with pool.lease() as c:
            return await c.request("slow")

    calls = [asyncio.ensure_future(call()) for _ in range(6)]
    await until(lambda: pool.stats()["in_use"] == 2)
    assert pool.stats()["total"] == 2  # six calls on two connections, none waiting
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == ["done"] * 6


async def test_subscriptions_and_responders_move_to_the_replacement_member(server, make_client) -> None:
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    pool = ConnectionPool("app", "127.0.0.1", proxy.port, min_connections=1, max_connections=2, initial_delay=0.01)
    try:
        await pool.start()
        got: asyncio.Queue[Any] = asyncio.Queue()
        assert await pool.subscribe("news", lambda msg: got.put_nowait(msg.payload))
        assert await pool.serve("double", lambda msg: msg.payload * 2)
        other = await make_client()
        assert await other.publish("news", 1, ack=True) == 1
        assert await asyncio.wait_for(got.get(), WAIT_S) == 1
        assert await other.request("double", 4) == 8

        proxy.cut()
        await until(lambda: pool.stats()["total_destroyed"] >= 1 and pool.stats()["available"] >= 1)

        async def delivered() -> int:
            return await other.publish("news", 2, ack=True)

        async with asyncio.timeout(WAIT_S):
            while await delivered() != 1:  # restored once the replacement registered
                await asyncio.sleep(0.01)
        assert await asyncio.wait_for(got.get(), WAIT_S) == 2
        assert await other.request("double", 5) == 10
        assert got.empty()  # delivered once, not once per member
    finally:
        await pool.close()
        await proxy.close()


@pytest.fixture
def gated(server) -> dict[str, Any]:
    """A ``gated`` handler: answers its payload once ``opened`` has it."""
    state: dict[str, Any] = {"entered": [], "opened": set(), "changed": asyncio.Event()}

    async def gated(msg: Message) -> Any:
        state["entered"].append(msg.payload)
        while msg.payload not in state["opened"]:
            state["changed"].clear()
            await state["changed"].wait()
        return msg.payload

    server.add_handler("gated", gated)
    return state


def open_gate(gated: dict[str, Any], *payloads: Any) -> None:
    gated["opened"].update(payloads)
    gated["changed"].set()


async def test_a_released_member_goes_to_every_waiting_lessee_at_once(make_pool, gated) -> None:
    # It used to go to the first lessee only; the others woke one at a time
    # as each finished, so shared calls ran one after another and timed out.
    pool = await make_pool(min_connections=1, max_connections=1, acquire_timeout=WAIT_S * 2)
    held = await pool.acquire()

    async def call(i: int) -> int:
        async with pool.lease() as c:
            return await c.request("gated", i, timeout=WAIT_S * 2)

    calls = [asyncio.ensure_future(call(i)) for i in range(4)]
    try:
        await until(lambda: pool.stats()["pending"] == 4)
        pool.release(held)
        await until(lambda: len(gated["entered"]) == 4)  # all four in flight on the one connection
        assert pool.stats()["total"] == 1 and pool.stats()["pending"] == 0
    finally:
        open_gate(gated, 0, 1, 2, 3)
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == [0, 1, 2, 3]
    assert pool.stats()["in_use"] == 0


async def test_waiting_lessees_share_while_waiting_acquirers_get_members_alone_in_order(make_pool, gated) -> None:
    pool = await make_pool(min_connections=1, max_connections=1, acquire_timeout=WAIT_S * 2)
    held = await pool.acquire()

    async def call(i: int) -> int:
        async with pool.lease() as c:
            return await c.request("gated", i, timeout=WAIT_S * 2)

    # Waiting in this order: lessee 1, an acquirer, lessee 2.
    lease1 = asyncio.ensure_future(call(1))
    await until(lambda: pool.stats()["pending"] == 1)
    acquirer = asyncio.ensure_future(pool.acquire())
    await until(lambda: pool.stats()["pending"] == 2)
    lease2 = asyncio.ensure_future(call(2))
    await until(lambda: pool.stats()["pending"] == 3)
    try:
        pool.release(held)
        await until(lambda: sorted(gated["entered"]) == [1, 2])  # both lessees, not the acquirer, share it
        assert not acquirer.done() and pool.stats()["pending"] == 1
        open_gate(gated, 1, 2)
        assert await asyncio.wait_for(asyncio.gather(lease1, lease2), WAIT_S) == [1, 2]
        client = await asyncio.wait_for(acquirer, WAIT_S)  # the member, once the lessees are done
        assert client is held

        # Lessees queued behind an exclusive holder all get the member on its release.
        lessees = [asyncio.ensure_future(call(i)) for i in (3, 4, 5)]
        await until(lambda: pool.stats()["pending"] == 3)
        pool.release(client)
        await until(lambda: sorted(gated["entered"]) == [1, 2, 3, 4, 5])
    finally:
        open_gate(gated, 1, 2, 3, 4, 5)
    assert await asyncio.wait_for(asyncio.gather(*lessees), WAIT_S) == [3, 4, 5]
    assert pool.stats() == {**pool.stats(), "total": 1, "in_use": 0, "pending": 0}


async def test_queue_path_is_refused(server, tmp_path) -> None:
    # Members given one file would share it and each replay every row in it.
    with pytest.raises(ValueError, match="queue_path"):
        ConnectionPool("app", "127.0.0.1", server.port, queue_path=str(tmp_path / "outbox.db"))
    assert not (tmp_path / "outbox.db").exists()
    pool = ConnectionPool("app", "127.0.0.1", server.port, queue_path=None)  # no file: nothing to share
    await pool.close()


async def test_a_calls_own_timeout_bounds_its_wait_for_a_member(make_pool) -> None:
    """notify() as the other calls: its ``timeout``, not ``request_timeout``,
    bounds the wait for a member when every one is taken."""
    pool = await make_pool(min_connections=1, max_connections=1, acquire_timeout=30, request_timeout=30)
    held = await pool.acquire()
    try:
        for call in (pool.notify, pool.publish, pool.request):
            with pytest.raises(RequestTimeout):
                await asyncio.wait_for(call("x", 1, timeout=0.2), WAIT_S)  # a bare TimeoutError: the call kept waiting
    finally:
        pool.release(held)
