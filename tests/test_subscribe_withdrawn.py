"""A subscribe() that times out or is cancelled after its frame went out
keeps nothing on the server either: the client withdraws it, and never a
later subscribe of the same channel (ipc_client.subscriptions.Subscriptions._withdraw).
The server is held still by a black-holing proxy, so its ack comes late."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient
from ipc_protocol import NoResponders, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy


@pytest.fixture
async def stalled(server: IPCServer, make_client: Callable[..., Any]) -> AsyncIterator[tuple[IPCClient, IPCClient, FaultProxy]]:
    """A subscriber behind a proxy (no heartbeat: the black hole must not
    kill its connection) and a publisher straight on the server."""
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        sub = await make_client(port=proxy.port, request_timeout=0.3, heartbeat_interval=None)
        pub = await make_client()
        yield sub, pub, proxy


async def _sent(client: IPCClient) -> None:
    """Until the client waits for an ack (its subscribe is on the wire)."""
    async with asyncio.timeout(WAIT_S):
        while not client._calls._pending:
            await asyncio.sleep(0.001)


async def _subscribers(sub: IPCClient, pub: IPCClient, channel: str) -> int:
    """How many connections the server delivers ``channel`` to, once it
    handled what the proxy held (it answers ``sub``'s frames in order)."""
    await sub.system("ping", timeout=WAIT_S)
    return await pub.publish(channel, 1, ack=True)


async def test_a_cancelled_subscribe_is_withdrawn(stalled: tuple[IPCClient, IPCClient, FaultProxy]) -> None:
    sub, pub, proxy = stalled
    got: list[Any] = []
    proxy.blackhole(True)
    task = asyncio.ensure_future(sub.subscribe("ghost", got.append))
    await _sent(sub)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    proxy.blackhole(False)
    assert await _subscribers(sub, pub, "ghost") == 0  # was 1, dropped by the client with no handler
    assert got == [] and "ghost" not in sub._subs.handlers


async def test_a_timed_out_subscribe_is_withdrawn(stalled: tuple[IPCClient, IPCClient, FaultProxy]) -> None:
    sub, pub, proxy = stalled
    proxy.blackhole(True)
    with pytest.raises(RequestTimeout):
        await sub.subscribe("late", lambda m: None)
    proxy.blackhole(False)
    assert await _subscribers(sub, pub, "late") == 0  # was 1


async def test_the_withdrawal_never_undoes_a_later_subscribe(stalled: tuple[IPCClient, IPCClient, FaultProxy]) -> None:
    """subscribe(A) times out, subscribe(A) again while the server still
    holds the first: the first's withdrawal must not remove the second."""
    sub, pub, proxy = stalled
    got: list[Any] = []
    proxy.blackhole(True)
    with pytest.raises(RequestTimeout):
        await sub.subscribe("again", got.append)
    second = asyncio.ensure_future(sub.subscribe("again", got.append))
    await asyncio.sleep(0)  # its frame goes out now, behind the first's and the withdrawal
    proxy.blackhole(False)
    await asyncio.wait_for(second, WAIT_S)
    assert await _subscribers(sub, pub, "again") == 1
    async with asyncio.timeout(WAIT_S):
        while not got:
            await asyncio.sleep(0.001)
    assert [m.payload for m in got] == [1]


async def test_a_second_handler_failing_keeps_the_first(stalled: tuple[IPCClient, IPCClient, FaultProxy]) -> None:
    sub, pub, proxy = stalled
    await sub.subscribe("two", lambda m: None)
    proxy.blackhole(True)
    with pytest.raises(RequestTimeout):
        await sub.subscribe("two", lambda m: None)
    proxy.blackhole(False)
    assert await _subscribers(sub, pub, "two") == 1  # the first handler's subscription stays


async def test_an_iterator_cancelled_at_its_first_step_is_withdrawn(stalled: tuple[IPCClient, IPCClient, FaultProxy]) -> None:
    sub, pub, proxy = stalled
    proxy.blackhole(True)
    it = sub.subscription("iter")
    task = asyncio.ensure_future(it.__anext__())
    await _sent(sub)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    proxy.blackhole(False)
    assert await _subscribers(sub, pub, "iter") == 0  # was 1
    await it.aclose()


async def test_a_pools_timed_out_subscribe_is_raised_and_forgotten(server: IPCServer, make_client: Callable[..., Any]) -> None:
    """Through a pool, the registrar's client withdraws it: the pool must
    not keep it as if it were active, where nothing would ever apply it."""
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        pool = ConnectionPool("app", "127.0.0.1", proxy.port, min_connections=1, request_timeout=0.3, heartbeat_interval=None)
        pub = await make_client()
        try:
            await pool.start()
            assert await pool.subscribe("first", lambda m: None)  # the registrar is live
            proxy.blackhole(True)
            with pytest.raises(RequestTimeout):
                await pool.subscribe("late", lambda m: None)
            proxy.blackhole(False)
            assert "late" not in pool._registrations.subscriptions
            got: asyncio.Queue[Any] = asyncio.Queue()
            assert await pool.subscribe("late", lambda m: got.put_nowait(m.payload))  # applied now, once
            assert await pub.publish("late", 7, ack=True) == 1
            assert await asyncio.wait_for(got.get(), WAIT_S) == 7
        finally:
            await pool.close()


async def test_serve_then_unserve_in_one_step_leaves_nothing_on_the_server(server: IPCServer, make_client: Callable[..., Any]) -> None:
    """serve() sends its frame from a task: an unserve() before that task's
    first step must not be overtaken by it (the server would route to no handler)."""
    client, other = await make_client(), await make_client()
    for _ in range(3):
        registration = client.serve("svc", lambda m: 1)
        await client.unserve("svc")  # runs before the task that sends serve()'s frame
        await asyncio.wait_for(registration.wait(), WAIT_S)
    await client.system("ping", timeout=WAIT_S)  # the server has read all of it
    assert server.stats.registrations == 0
    with pytest.raises(NoResponders):
        await other.request("svc", None, timeout=WAIT_S)


async def test_a_handler_subscribed_twice_is_held_once(server: IPCServer, make_client: Callable[..., Any]) -> None:
    """As Node's (a Set): one unsubscribe(channel, handler) removes it; it hears each message once."""
    client, pub = await make_client(), await make_client()
    got: list[Any] = []
    await client.subscribe("news", got.append)
    await client.subscribe("news", got.append)
    assert await pub.publish("news", 1, ack=True) == 1
    await client.unsubscribe("news", got.append)
    assert await pub.publish("news", 2, ack=True) == 0
    assert [m.payload for m in got] == [1]
