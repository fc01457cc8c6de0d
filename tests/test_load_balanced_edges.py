"""LoadBalancedClient and its pools at their edges (docs/resilience.md §7,
§8), as the Node client behaves: a server whose connection never opens,
close() while start() opens connections, and what server_stats() counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ipc_client import ConnectionPool, LoadBalancedClient
from ipc_protocol import AlreadyServing, Message, NoResponders, NotConnected, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S


@pytest.fixture
async def real() -> AsyncIterator[IPCServer]:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as srv:
        srv.add_handler("who", lambda msg: "real")
        yield srv


class Silent:
    """A listener that takes connections and never answers (no handshake reply)."""

    def __init__(self) -> None:
        self.held: list[asyncio.StreamWriter] = []
        self.port = 0

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    listener = Silent()
    server = await asyncio.start_server(listener._hold, "127.0.0.1", 0)
    listener.port = server.sockets[0].getsockname()[1]
    yield listener
    for writer in listener.held:
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
        "app", [("127.0.0.1", silent.port), ("127.0.0.1", real.port)],
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
    lb = LoadBalancedClient("app", [("127.0.0.1", silent.port)], min_connections=0, health_check_interval=None, acquire_timeout=0.3, connect_timeout=5)
    lbs.append(lb)
    await lb.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout, match="acquire timeout"):
        await lb.request("who", timeout=3)
    assert loop.time() - started < 2.0


async def test_close_during_start_makes_start_raise_not_connected(silent, lbs) -> None:
    """As every call after close() (and the Node client); start() returned as if started."""
    lb = LoadBalancedClient("app", [("127.0.0.1", silent.port)], health_check_interval=0.05, connect_timeout=20)
    lbs.append(lb)
    starting = asyncio.ensure_future(lb.start())
    async with asyncio.timeout(WAIT_S):
        while not silent.held and not starting.done():
            await asyncio.sleep(0.005)
    await lb.close()
    with pytest.raises(NotConnected, match="closed during start"):
        await asyncio.wait_for(starting, WAIT_S)
    assert lb._health._task is None  # no health checks after close()


async def test_pool_close_stops_the_opens_of_start(silent) -> None:
    """close() ends the handshakes under way, as Node's pool does: start()
    raises at once, not at connect_timeout, and says why."""
    pool = ConnectionPool("app", "127.0.0.1", silent.port, min_connections=2, connect_timeout=20)
    starting = asyncio.ensure_future(pool.start())
    async with asyncio.timeout(WAIT_S):
        while len(silent.held) < 2:
            await asyncio.sleep(0.005)
    await pool.close()
    with pytest.raises(NotConnected, match="the pool is closed"):
        await asyncio.wait_for(starting, WAIT_S)  # was: 20 s, then "closed the connection without answering"
    assert pool.stats()["total"] == 0 and not pool._opening_clients


async def test_server_stats_count_a_call_once_it_ended(real, lbs) -> None:
    """``requests`` counts the calls that ended (as Node): one in flight is
    ``in_flight`` only; ``error_rate`` and ``average_latency_ms`` cover the same calls."""
    release = asyncio.Event()

    async def hold(msg: Message) -> str:
        await release.wait()
        return "held"

    real.add_handler("hold", hold)
    lb = LoadBalancedClient("app", [("127.0.0.1", real.port)], health_check_interval=None)
    lbs.append(lb)
    await lb.start()
    held = asyncio.ensure_future(lb.request("hold"))
    async with asyncio.timeout(WAIT_S):
        while lb.server_stats()[0]["in_flight"] != 1:
            await asyncio.sleep(0.005)
    snap = lb.server_stats()[0]
    assert (snap["in_flight"], snap["requests"], snap["errors"], snap["average_latency_ms"]) == (1, 0, 0, None)  # requests was 1
    release.set()
    assert await asyncio.wait_for(held, WAIT_S) == "held"
    with pytest.raises(NoResponders):
        await lb.request("nobody", timeout=1)
    snap = lb.server_stats()[0]
    assert (snap["in_flight"], snap["requests"], snap["errors"], snap["error_rate"]) == (0, 2, 1, 0.5)
    assert snap["average_latency_ms"] > 0


async def test_serving_a_served_channel_again_raises_already_serving(real, lbs) -> None:
    """As IPCClient.serve() and Node's LoadBalancedClient.serve(): a plain
    ValueError without a code before."""
    lb = LoadBalancedClient("app", [f"127.0.0.1:{real.port}"], health_check_interval=None)
    lbs.append(lb)
    await lb.start()
    assert await lb.serve("twice", lambda msg: 1) == 1
    with pytest.raises(AlreadyServing) as caught:
        await lb.serve("twice", lambda msg: 2)
    assert caught.value.code == "already_serving"
    await lb.unserve("twice")
    assert await lb.serve("twice", lambda msg: 3) == 1  # once unserved, it may be served again
