"""What the Python client's resilience tests share (tests/test_resilience.py,
tests/test_resilience_queue.py): the fault proxy (tests/faultproxy.py)
between the real server and clients made to talk through it, and waits
for what no event announces. The Node mirror is js-client/test/proxied.js."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy

FAST = {"initial_delay": 0.02, "max_delay": 0.1, "jitter": 0.0}


@pytest.fixture
async def proxy(server: IPCServer) -> AsyncIterator[FaultProxy]:
    p = await FaultProxy("127.0.0.1", server.port).start()
    yield p
    await p.close()


@pytest.fixture
def via_proxy(proxy: FaultProxy, make_client: Callable[..., Awaitable[IPCClient]]) -> Callable[..., Awaitable[IPCClient]]:
    """Clients that talk to the server through the proxy (``make_client``'s, disconnected with them)."""

    def make(app_id: str = "app", *, connect: bool = True, **kwargs: Any) -> Awaitable[IPCClient]:
        return make_client(app_id, connect=connect, port=proxy.port, **{**FAST, **kwargs})

    return make


async def until(predicate: Callable[[], bool]) -> None:
    """Wait, bounded, for a condition no event announces."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.005)


def state_event(client: IPCClient, name: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()
    client.on(name, lambda *args: q.put_nowait(args[0] if args else None))
    return q


async def outage(proxy: FaultProxy, client: IPCClient) -> None:
    """Take the server away (existing connections cut, new ones refused) and
    wait until the client knows."""
    reconnecting = state_event(client, "reconnecting")
    proxy.refuse(True)
    proxy.cut()
    await asyncio.wait_for(reconnecting.get(), WAIT_S)
