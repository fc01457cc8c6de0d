"""The goaway notice at the edges of a connection (docs/resilience.md §12).

While connecting: a notice that came with the connect answer or while the
subscriptions were restored was dropped; the client went ``connected`` on a
connection told to go away, sent its calls there (``shutting_down``) and
never closed it, so the server waited its 2 s and aborted. Now the attempt
fails, the socket is closed without a reset and the reconnection retries.

After it, with reconnect off: disconnect() returned at once and left the
connection open until its calls ended or the 2 s passed. Now it closes it.
"""

from __future__ import annotations

import asyncio
import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, NotConnected, ShuttingDown
from ipc_server import IPCServer

from .conftest import WAIT_S
from .goaway_hooks import CLOSE_WAIT_S, close_at_next_subscribe, cut_every_connection, never_answer

QUICK_S = CLOSE_WAIT_S / 2  # the server's close, once the client closed: milliseconds


async def test_a_notice_while_restoring_fails_the_attempt_and_calls_wait_for_the_next_server(monkeypatch: pytest.MonkeyPatch) -> None:
    old = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await old.start()
    port = old.port
    client = IPCClient("app", "127.0.0.1", port, reconnect=True, initial_delay=0.02, max_delay=0.1)
    try:
        await client.connect()
        await client.subscribe("news", lambda m: None)
        events: list[str] = []
        for name in ("connected", "reconnected"):
            client.on(name, lambda *_, name=name: events.append(name))
        lost = asyncio.Event()
        client.on("disconnected", lambda cause: lost.set())
        took = close_at_next_subscribe(old, monkeypatch)
        cut_every_connection(old)  # the client reconnects; the server goes away as it restores 'news'
        await asyncio.wait_for(lost.wait(), WAIT_S)
        later = asyncio.ensure_future(client.request("who", timeout=WAIT_S))
        assert await asyncio.wait_for(took, WAIT_S) < QUICK_S  # the client closed: was the full 2 s
        assert events == [] and client.state.value == "reconnecting"  # never connected on it
        assert not later.done()  # queued, not sent there (was shutting_down)
        async with IPCServer("127.0.0.1", port, no_responders_grace_s=0) as new:
            new.add_handler("who", lambda m: "new")
            assert await asyncio.wait_for(later, WAIT_S) == "new"
            assert events == ["reconnected", "connected"]
            await client.disconnect()
    finally:
        await client.disconnect()
        await old.close()


async def test_with_reconnect_off_connect_fails_not_connected_caused_by_shutting_down(monkeypatch: pytest.MonkeyPatch) -> None:
    server = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await server.start()
    client = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
    try:
        await client.subscribe("news", lambda m: None)  # restored by connect()
        took = close_at_next_subscribe(server, monkeypatch)
        with pytest.raises(NotConnected) as raised:
            await asyncio.wait_for(client.connect(), WAIT_S)
        assert isinstance(raised.value.__cause__, ShuttingDown)
        assert client.state.value == "disconnected"
        assert await asyncio.wait_for(took, WAIT_S) < QUICK_S
    finally:
        await client.disconnect()
        await server.close()


async def test_disconnect_after_a_goaway_with_reconnect_off_closes_the_connection_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    server = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await server.start()
    arrived = never_answer(server, monkeypatch, "slow")
    client = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
    try:
        await client.connect()
        call = asyncio.ensure_future(client.request("slow", timeout=WAIT_S * 4))
        await asyncio.wait_for(arrived.wait(), WAIT_S)
        told = asyncio.Event()
        client.on("disconnected", lambda cause: told.set())
        loop = asyncio.get_running_loop()
        closing = asyncio.ensure_future(server.close(grace_s=0))
        await asyncio.wait_for(told.wait(), WAIT_S)
        assert client.state.value == "disconnected" and not call.done()  # the connection is held for its answer
        started = loop.time()
        await asyncio.wait_for(client.disconnect(), WAIT_S)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(call, QUICK_S)  # was left waiting until the server's 2 s
        await asyncio.wait_for(closing, WAIT_S)
        assert loop.time() - started < QUICK_S
    finally:
        await client.disconnect()
        await server.close()
