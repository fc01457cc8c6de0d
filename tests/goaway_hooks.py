"""A real server whose shutdown begins exactly while a client restores its
subscriptions: the goaway notice reaches the client before it is connected
(docs/resilience.md §12). Shared by tests/test_goaway_connecting.py and the
Node twin in interop-tests/test_js_goaway.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import ipc_server.shutdown as shutdown
from ipc_server import IPCServer
from ipc_server.connection import ServerConnection

CLOSE_WAIT_S = 2.0  # the server's wait for its clients to close after the notice (ipc_server/shutdown.py)


def close_at_next_subscribe(server: IPCServer, monkeypatch: pytest.MonkeyPatch) -> asyncio.Future[float]:
    """On the next subscribe, begin ``server.close(grace_s=0)`` and answer
    that subscribe only once the connection was sent the goaway notice, so
    the client reads the notice while restoring, always. Resolves with how
    long close() took: milliseconds once the client closes, the full
    ``CLOSE_WAIT_S`` when it does not."""
    loop = asyncio.get_running_loop()
    took: asyncio.Future[float] = loop.create_future()
    held: list[tuple[ServerConnection, Any]] = []
    answer = server._pubsub.subscription
    tell = shutdown.close_for_shutdown
    tasks: set[asyncio.Task[None]] = set()

    async def close() -> None:
        started = loop.time()
        await server.close(grace_s=0)
        took.set_result(loop.time() - started)

    def subscription(conn: ServerConnection, msg: Any) -> None:
        if held:
            answer(conn, msg)
            return
        held.append((conn, msg))
        tasks.add(asyncio.ensure_future(close()))

    def told(conn: ServerConnection) -> None:
        tell(conn)
        if held and held[0][0] is conn:
            answer(*held[0])  # the subscribe's answer comes after the notice

    monkeypatch.setattr(server._pubsub, "subscription", subscription)
    monkeypatch.setattr(shutdown, "close_for_shutdown", told)
    took.add_done_callback(lambda _: tasks.clear())
    return took


def never_answer(server: IPCServer, monkeypatch: pytest.MonkeyPatch, channel: str) -> asyncio.Event:
    """Requests on ``channel`` are read and never answered (an answer still on
    its way when the notice goes out); the event is set when one arrives."""
    arrived = asyncio.Event()
    route = server._route

    def swallow(conn: ServerConnection, msg: Any, body: bytes) -> None:
        if msg.channel_id == channel:
            arrived.set()
            return
        route(conn, msg, body)

    monkeypatch.setattr(server, "_route", swallow)
    return arrived


def cut_every_connection(server: IPCServer) -> None:
    """A loss, as a network fault would make it: the clients reconnect and restore."""
    for conn in list(server._admission.connections):
        conn.abort()
