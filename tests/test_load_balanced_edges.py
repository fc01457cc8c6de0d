"""LoadBalancedClient at its edges (docs/resilience.md §8), as the Node
client behaves: a server whose connection never opens, and what
server_stats() counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import LoadBalancedClient
from ipc_protocol import Message, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S


@pytest.fixture
async def real() -> AsyncIterator[IPCServer]:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as srv:
        srv.add_handler("who", lambda msg: "real")
        yield srv


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    """The port of a listener that takes connections and never answers (no handshake reply)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def lbs() -> AsyncIterator[list[LoadBalancedClient]]:
    made: list[LoadBalancedClient] = []
    yield made
    for lb in made:
        await lb.close()


async def test_a_server_whose_connection_never_opens_is_left_after_the_acquire_timeout(real, silent, lbs) -> None:
    """Each server gets the pool's acquire_timeout to give a connection,
    not the whole call's deadline; then the call moves on (was: the call
    waited its 3 s there and failed RequestTimeout)."""
    lb = LoadBalancedClient(
        "app", [("127.0.0.1", silent), ("127.0.0.1", real.port)],
        min_connections=0, health_check_interval=None, acquire_timeout=0.3, connect_timeout=5,
    )  # fmt: skip
    lbs.append(lb)
    await lb.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await lb.request("who", timeout=3) == "real"
    assert 0.25 <= loop.time() - started < 2.0
    stalled, answered = lb.server_stats()
    assert (stalled["requests"], stalled["errors"], stalled["healthy"]) == (1, 1, True)  # its open goes on
    assert (answered["requests"], answered["errors"]) == (1, 0)


async def test_with_only_a_silent_server_the_call_fails_at_the_acquire_timeout(silent, lbs) -> None:
    lb = LoadBalancedClient("app", [("127.0.0.1", silent)], min_connections=0, health_check_interval=None, acquire_timeout=0.3, connect_timeout=5)
    lbs.append(lb)
    await lb.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout, match="acquire timeout"):
        await lb.request("who", timeout=3)
    assert loop.time() - started < 2.0
