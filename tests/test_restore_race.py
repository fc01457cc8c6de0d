"""A reconnection's restore and unsubscribe()/unserve() racing it: once the
client is connected again, the server holds exactly what the client holds
(ipc_client.subscriptions.Subscriptions.restore)."""

from __future__ import annotations

import asyncio
from typing import Any

from ipc_client import IPCClient
from ipc_protocol import NoResponders
from ipc_server import IPCServer

from .conftest import WAIT_S


async def test_what_is_dropped_while_the_restore_runs_is_withdrawn(server, make_client) -> None:
    sub = await make_client(initial_delay=0.01, max_delay=0.05)
    pub = await make_client()
    got: list[Any] = []
    await sub.subscribe("gone", got.append)
    await sub.subscribe("kept", got.append)
    await sub.serve("svc", lambda m: "from sub")
    reconnected = asyncio.Event()
    sub.on("reconnected", lambda info: reconnected.set())

    # Hold the restore once the server has acknowledged what it resent:
    # the client is not connected yet, so unsubscribe()/unserve() tell the server nothing.
    restored, gate = asyncio.Event(), asyncio.Event()
    restore_one = sub._subs._restore_one

    async def held(*args: Any) -> None:
        await restore_one(*args)
        restored.set()
        await gate.wait()

    sub._subs._restore_one = held
    [conn] = [c for c in server.connections if c.connection_id == sub.connection_id]
    conn.transport.abort()
    await asyncio.wait_for(restored.wait(), WAIT_S)
    assert not sub.connected
    await sub.unsubscribe("gone")
    await sub.unserve("svc")
    gate.set()
    await asyncio.wait_for(reconnected.wait(), WAIT_S)

    assert await pub.publish("gone", 1, ack=True) == 0  # was 1: the server kept the subscription
    assert await pub.publish("kept", 2, ack=True) == 1
    assert "svc" not in (await pub.system("services"))["services"]
    try:
        await pub.request("svc", None, timeout=WAIT_S)
    except NoResponders as exc:
        assert "does not serve" not in exc.message  # the server's answer, not the client's refusal
    else:  # pragma: no cover
        raise AssertionError("svc was answered")
    await sub.subscribe("gone", got.append)  # and still possible afterwards
    assert await pub.publish("gone", 3, ack=True) == 1


async def test_a_registration_withdrawn_before_the_server_had_it_settles() -> None:
    """serve() while the server is away, unserve() before it is back: the
    Registration the first returned settles at once rather than never."""
    lost = asyncio.Event()
    async with IPCServer("127.0.0.1", 0) as server:
        client = IPCClient("app", "127.0.0.1", server.port, initial_delay=0.05, max_delay=0.1)
        client.on("disconnected", lambda *a: lost.set())
        await client.connect()
    try:  # the server is gone: the client reconnects in the background
        await asyncio.wait_for(lost.wait(), WAIT_S)
        registration = client.serve("svc", lambda m: m.payload)
        await client.unserve("svc")
        await asyncio.wait_for(registration, WAIT_S)
    finally:
        await client.disconnect()
