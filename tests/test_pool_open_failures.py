"""An open the server refuses, through a pool, a load-balanced client and a
service client (docs/resilience.md §7, §8, §9): a failed open is
``NotConnected`` whatever the reason, the reason kept as its ``__cause__``,
as the Node client has it (``.cause``); here a server at its
``max_connections``, whose refusal is ``too_many_connections``. And the
reason a load-balanced client's failed health check gives ``server_down``,
the same in both clients. And a pool whose ``start()`` failed keeps
opening its members in the background, as Node's."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient, ServiceClient
from ipc_protocol import NotConnected, TooManyConnections, Unauthorized
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy


@pytest.fixture
async def full_server() -> AsyncIterator[IPCServer]:
    """A server whose only place is taken."""
    async with IPCServer("127.0.0.1", 0, max_connections=1) as server:
        holder = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
        await holder.connect()
        try:
            yield server
        finally:
            await holder.disconnect()


def refused(error: BaseException) -> bool:
    """``NotConnected`` caused by the server's ``too_many_connections``."""
    return isinstance(error, NotConnected) and isinstance(error.__cause__, TooManyConnections)


async def test_a_pool_reports_a_full_server_as_not_connected(full_server) -> None:
    pool = ConnectionPool("app", "127.0.0.1", full_server.port, min_connections=0)
    await pool.start()
    try:
        for call in (pool.acquire, lambda: pool.request("echo")):
            with pytest.raises(NotConnected) as err:
                await call()
            assert refused(err.value), repr(err.value.__cause__)
        assert await pool.health_check() == {"healthy": False, "latency_ms": None, "error": "not_connected"}
    finally:
        await pool.close()
    pool = ConnectionPool("app", "127.0.0.1", full_server.port, min_connections=1)
    try:
        with pytest.raises(NotConnected) as err:
            await pool.start()
        assert refused(err.value)
    finally:
        await pool.close()


async def test_balanced_and_service_clients_carry_the_cause(full_server) -> None:
    address = f"127.0.0.1:{full_server.port}"
    lb = LoadBalancedClient("app", [address])
    downs: list[Any] = []
    lb.on("server_down", lambda snapshot, error: downs.append(error))
    try:
        with pytest.raises(NotConnected) as err:
            await lb.start()
        assert isinstance(err.value.__cause__, TooManyConnections)  # what is under the pool's NotConnected, as in Node (docs/resilience.md §8)
        assert "too_many_connections" in str(err.value)  # the first server's failure, named
        assert len(downs) == 1 and refused(downs[0])  # server_down says why, as in Node
    finally:
        await lb.close()
    services = ServiceClient({"s": {"servers": [address]}}, app_id="gateway")
    try:
        with pytest.raises(NotConnected) as err:
            await asyncio.wait_for(services.start(), WAIT_S)
        assert isinstance(err.value.__cause__, NotConnected) and isinstance(err.value.__cause__.__cause__, TooManyConnections)  # its balancer's start()
    finally:
        await services.shutdown()


async def test_a_failed_health_check_takes_the_server_out_as_node_says_it() -> None:
    """Node's reason (``NotConnectedError('health check failed: timeout')``),
    not the ping's own ``RequestTimeout``."""
    async with IPCServer("127.0.0.1", 0) as server, FaultProxy("127.0.0.1", server.port) as proxy:
        lb = LoadBalancedClient("app", [f"127.0.0.1:{proxy.port}"], health_check_interval=None, health_check_timeout=0.2)
        downs: list[Any] = []
        lb.on("server_down", lambda snapshot, error: downs.append(error))
        try:
            await lb.start()
            proxy.blackhole()
            await asyncio.wait_for(lb.check_health(), WAIT_S)
            assert len(downs) == 1 and isinstance(downs[0], NotConnected), repr(downs)
            assert str(downs[0]) == "health check failed: timeout"
        finally:
            proxy.blackhole(False)
            await lb.close()


async def test_after_a_failed_start_the_pool_opens_its_members_once_the_server_listens() -> None:
    """No call made: the pool's own retries, with the members' backoff
    (Node's pool did; the Python one stayed empty until a call opened a
    member). interop-tests/test_js_pool_recovery.py runs both clients."""
    with socket.socket() as reserved:  # bound, not listening: refused, and the port stays ours
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        pool = ConnectionPool("app", "127.0.0.1", port, min_connections=2, max_connections=4, initial_delay=0.02, max_delay=0.1)
        created: asyncio.Queue[IPCClient] = asyncio.Queue()
        pool.on("member_created", created.put_nowait)
        with pytest.raises(NotConnected):
            await pool.start()
    try:
        async with IPCServer("127.0.0.1", port) as server:
            server.add_handler("echo", lambda msg: msg.payload)
            for _ in range(2):
                await asyncio.wait_for(created.get(), WAIT_S)  # was: never
            assert pool.stats()["total"] == 2  # min_connections, and no more
            assert await pool.request("echo", 1, timeout=WAIT_S) == 1
    finally:
        await pool.close()


async def test_after_a_start_refused_unauthorized_the_pool_does_not_retry() -> None:
    """Retrying cannot fix credentials (docs/resilience.md §7), as Node's
    pool stops: the server sees the one refused open."""
    async with IPCServer("127.0.0.1", 0, token="right") as server:
        pool = ConnectionPool("app", "127.0.0.1", server.port, token="wrong", initial_delay=0.01, max_delay=0.02)
        try:
            with pytest.raises(Unauthorized):
                await pool.start()
            assert pool._refill_task is None  # no retry scheduled
        finally:
            await pool.close()
