"""A "disconnected" listener that calls connect() or disconnect() while
disconnect() runs (code that reconnects by hand, a "restart the client"
helper): the Node client threw a TypeError there (js-client
test/reentrancy.test.js); the Python client must end as asked too."""

from __future__ import annotations

import asyncio
from typing import Any

from ipc_client import ConnectionState, IPCClient

from .conftest import WAIT_S


async def test_connect_from_a_disconnected_listener_during_disconnect_reconnects(server) -> None:
    client = IPCClient("app", "127.0.0.1", server.port)
    await client.connect()
    reconnected: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    connects = 0

    async def reconnect(_reason: Any) -> None:
        nonlocal connects
        connects += 1
        if connects > 1:
            return  # the test's own last disconnect()
        try:
            reconnected.set_result(await client.connect())
        except BaseException as exc:  # the test reads it, whatever it is
            reconnected.set_exception(exc)

    client.on("disconnected", reconnect)
    try:
        await client.disconnect()
        assert await asyncio.wait_for(reconnected, WAIT_S) is True
        assert client.state is ConnectionState.CONNECTED
        assert await client.health_check() is True
        assert connects == 1
    finally:
        await client.disconnect()
    assert client.state is ConnectionState.DISCONNECTED


async def test_disconnect_from_a_disconnected_listener_during_disconnect_ends_disconnected(server) -> None:
    client = IPCClient("app", "127.0.0.1", server.port)
    await client.connect()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    events: list[str] = []
    client.on("disconnected", lambda _reason: events.append("disconnected"))

    async def again(_reason: Any) -> None:
        await client.disconnect()  # returns: the client is disconnected already
        done.set_result(None)

    client.on("disconnected", again)
    await client.disconnect()
    await asyncio.wait_for(done, WAIT_S)
    assert client.state is ConnectionState.DISCONNECTED
    assert events == ["disconnected"]
