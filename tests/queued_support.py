"""What the tests of calls sent later than they are made share
(test_queued_bytes.py, test_queued_values.py): a client whose calls queue,
and a handler that keeps what it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy


@pytest.fixture
async def offline() -> AsyncIterator[tuple[IPCServer, FaultProxy, IPCClient]]:
    """A server, a proxy to it, and a client through the proxy that has
    connected once and is now reconnecting (the proxy refuses): its calls queue."""
    server = IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2, no_responders_grace_s=0)
    await server.start()
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    client = IPCClient("app", "127.0.0.1", proxy.port, request_timeout=WAIT_S, initial_delay=0.01, max_delay=0.05)
    try:
        await asyncio.wait_for(client.connect(), WAIT_S)
        lost = asyncio.Event()
        client.on("disconnected", lambda *_: lost.set())
        proxy.refuse(True)
        proxy.cut()
        await asyncio.wait_for(lost.wait(), WAIT_S)
        yield server, proxy, client
    finally:
        await client.disconnect()
        await proxy.close()
        await server.close()


def sink_on(server: IPCServer) -> list[Any]:
    got: list[Any] = []

    def sink(msg: Any) -> str:
        got.append(msg.payload)
        return "ok"

    server.add_handler("sink", sink)
    return got
