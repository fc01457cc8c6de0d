"""A pool's and a load-balanced client's metrics count what a lone client
counts (docs/resilience.md §2, §7): a connection open that failed is an
attempt, and a call that failed before it reached a connection (none could
be opened, none was free in time, the pool is closed) is failed. Both were
left out: a pool at a closed port reported 0 attempts, a success rate of
1.0 and 0 failed calls after a failed start() and three failed requests,
where a lone client reports 1 attempt and a rate of 0.0 for one failed
connect(). The Node client counts the same (interop-tests/test_js_pool_faults.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient
from ipc_protocol import NotConnected, RequestTimeout
from ipc_server import IPCServer

from .test_load_balanced_edges import Silent, lbs, real, silent  # noqa: F401 (fixtures)
from .test_pool import until

__all__ = ["Silent"]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound and not listening: every connect to it is refused, and no other process takes it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def counts(metrics: dict[str, object]) -> tuple[object, ...]:
    keys = ("connection_attempts", "connection_successes", "connection_success_rate", "messages_failed", "message_delivery_rate")
    return tuple(metrics[k] for k in keys)


async def test_failed_opens_and_calls_that_reached_no_member_are_counted(refused_port: int) -> None:
    lone = IPCClient("app", "127.0.0.1", refused_port, reconnect=False)
    with pytest.raises(NotConnected):
        await lone.connect()
    assert counts(lone.metrics())[:3] == (1, 0, 0.0)
    pool = ConnectionPool("app", "127.0.0.1", refused_port, min_connections=1, initial_delay=5)  # no background retry meanwhile
    try:
        with pytest.raises(NotConnected):
            await pool.start()
        for _ in range(3):
            with pytest.raises(NotConnected):
                await pool.request("x", 1, timeout=0.5)
        assert counts(pool.metrics()) == (4, 0, 0.0, 3, 0.0)  # was (0, 0, 1.0, 0, 1.0)
        await until(lambda: not pool._retiring)
        assert counts(pool.metrics()) == (4, 0, 0.0, 3, 0.0)  # folded into the retired sum: the same
    finally:
        await pool.close()
    with pytest.raises(NotConnected):
        await pool.request("x", 1)  # closed: not connected, as a lone client after disconnect()
    assert pool.metrics()["messages_failed"] == 4


async def test_an_open_the_server_never_answers_is_an_attempt(silent: Silent) -> None:
    pool = ConnectionPool("app", "127.0.0.1", silent.port, connect_timeout=0.2, initial_delay=5)
    try:
        with pytest.raises(NotConnected):
            await pool.start()
        with pytest.raises(NotConnected):
            await pool.request("x", 1, timeout=2)  # its open fails at connect_timeout
        assert counts(pool.metrics()) == (2, 0, 0.0, 1, 0.0)  # was (0, 0, 1.0, 0, 1.0)
        pending = asyncio.ensure_future(pool.request("x", 1, timeout=2))
        await until(lambda: bool(pool._opening_clients) and pool.metrics()["connection_attempts"] == 3)  # under way: counted, as a lone client's
        with pytest.raises(NotConnected):
            await pending
    finally:
        await pool.close()


async def test_a_call_that_got_no_member_in_time_is_failed(server: IPCServer) -> None:
    server.add_handler("echo", lambda msg: msg.payload)
    pool = ConnectionPool("app", "127.0.0.1", server.port, min_connections=1, max_connections=1)
    try:
        await pool.start()
        held = await pool.acquire()
        with pytest.raises(RequestTimeout, match="acquire timeout"):
            await pool.request("echo", 1, timeout=0.1)
        pool.release(held)
        assert await pool.request("echo", 2) == 2
        m = pool.metrics()
        assert (m["messages_failed"], m["messages_delivered"], m["message_delivery_rate"]) == (1, 1, 0.5)  # was (0, 1, 1.0)
        with pytest.raises(RequestTimeout):
            await pool.request("echo", 3, timeout=0)  # no time at all: failed, as a lone client's
        assert pool.metrics()["messages_failed"] == 2
    finally:
        await pool.close()


async def test_a_load_balanced_call_counts_where_it_failed(silent: Silent, refused_port: int, lbs: list[LoadBalancedClient]) -> None:
    """An attempt that got no connection counts in its server's pool; a call
    that reached no server (none healthy, the client closed) in the client's own count."""
    stalled = LoadBalancedClient("app", [("127.0.0.1", silent.port)], min_connections=0, health_check_interval=None, acquire_timeout=0.2, connect_timeout=5)
    lbs.append(stalled)
    await stalled.start()
    with pytest.raises(RequestTimeout, match="acquire timeout"):
        await stalled.request("x", timeout=2)
    assert counts(stalled.metrics()) == (1, 0, 0.0, 1, 0.0)  # the open goes on: an attempt (was: 0 attempts, 0 failed)
    down = LoadBalancedClient("app", [("127.0.0.1", refused_port)], health_check_interval=None, initial_delay=5)
    lbs.append(down)
    with pytest.raises(NotConnected):
        await down.start()
    with pytest.raises(NotConnected, match="no healthy server"):
        await down.request("x", timeout=1)
    await down.close()
    with pytest.raises(NotConnected, match="closed"):
        await down.request("x", timeout=1)
    assert counts(down.metrics()) == (1, 0, 0.0, 2, 0.0)


async def test_a_stream_that_reached_no_connection_is_failed_as_a_request(server: IPCServer, refused_port: int, lbs: list[LoadBalancedClient]) -> None:
    """stream() through a pool or a load-balanced client counts where a
    request counts: one that got no member (none could be opened, none
    free in time, the pool closed) is failed in the pool, one that reached
    no server in the load-balanced client. All were left out (0 failed)."""
    down = ConnectionPool("app", "127.0.0.1", refused_port, min_connections=0)
    try:
        with pytest.raises(NotConnected):
            await down.stream("x", timeout=0.5).__anext__()  # its open refused
        assert down.metrics()["messages_failed"] == 1  # was 0
    finally:
        await down.close()
    with pytest.raises(NotConnected):
        await down.stream("x").__anext__()  # closed
    assert down.metrics()["messages_failed"] == 2  # was 0
    pool = ConnectionPool("app", "127.0.0.1", server.port, min_connections=1, max_connections=1)
    try:
        await pool.start()
        held = await pool.acquire()
        with pytest.raises(RequestTimeout):
            await pool.stream("x", timeout=0.1).__anext__()  # no member free within its timeout
        pool.release(held)
        assert pool.metrics()["messages_failed"] == 1  # was 0
    finally:
        await pool.close()
    lb = LoadBalancedClient("app", [("127.0.0.1", refused_port)], health_check_interval=None, min_connections=0)
    lbs.append(lb)
    with pytest.raises(NotConnected, match="start"):
        await lb.stream("x").__anext__()  # not started: no server tried
    await lb.start()
    with pytest.raises(NotConnected):
        await lb.stream("x", timeout=1).__anext__()  # its one server's open refused: failed in that pool
    with pytest.raises(NotConnected, match="no healthy server"):
        await lb.stream("x", timeout=1).__anext__()  # out of rotation now: no server tried
    assert lb.metrics()["messages_failed"] == 3  # was 0
    assert lb.pools()[f"127.0.0.1:{refused_port}"].metrics()["messages_failed"] == 1
