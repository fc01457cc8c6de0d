"""ConnectionPool.stream() against a real server on loopback (docs/protocol.md
§15, docs/resilience.md §7): the items in order on a member shared as
lease() shares it, the member given back exactly once however the stream
ends (its end, an error, the reader leaving, close()), the cancel reaching
the producer, and the deadline covering the wait for a member."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool
from ipc_protocol import ConnectionLost, HandlerError, Message, NotConnected, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S, counting_until_closed
from .test_pool import until


@pytest.fixture
async def make_pool(server: IPCServer) -> AsyncIterator[Callable[..., Any]]:
    pools: list[ConnectionPool] = []

    async def make(**kwargs: Any) -> ConnectionPool:
        pool = ConnectionPool("app", "127.0.0.1", server.port, **kwargs)
        pools.append(pool)
        await pool.start()
        return pool

    yield make
    for p in pools:
        await p.close()


def shares(pool: ConnectionPool) -> list[int]:
    """The lease count of each member: never negative (given back once)."""
    return [m.shared for m in pool._members]


async def count(msg: Message) -> AsyncIterator[int]:
    for i in range(msg.payload["n"]):
        yield i


async def test_items_come_in_order_on_a_shared_member_given_back_at_the_end(server: IPCServer, make_pool) -> None:
    server.add_handler("count", count)
    server.add_handler("echo", lambda msg: msg.payload)
    pool = await make_pool(min_connections=1, max_connections=1)
    got = []
    async with pool.stream("count", {"n": 300}, window=8) as items:
        async for item in items:
            got.append(item)
            if item == 0:  # the member is shared, as lease() shares it: another call runs on it meanwhile
                assert pool.stats()["in_use"] == 1 and shares(pool) == [1]
                assert await pool.request("echo", "x", timeout=WAIT_S) == "x"
    assert got == list(range(300))
    assert shares(pool) == [0]
    assert pool.stats() == {"total": 1, "available": 1, "in_use": 0, "pending": 0, "total_created": 1, "total_destroyed": 0}
    await until(lambda: server.stats.streams == 0)
    assert server.stats.streams_opened == 1 and server.stats.cancels == 0


@pytest.mark.parametrize("how", ["async_with_break", "aclose", "bare_break", "task_cancel"])
async def test_leaving_early_cancels_at_the_producer_and_gives_the_member_back_once(server: IPCServer, make_pool, how: str) -> None:
    closed = asyncio.Event()
    server.add_handler("endless", counting_until_closed(closed))
    pool = await make_pool(min_connections=1, max_connections=1)
    if how == "async_with_break":
        async with pool.stream("endless", window=4) as items:
            async for item in items:
                if item == 2:
                    break
    elif how == "aclose":
        stream = pool.stream("endless", window=4)
        assert [await stream.__anext__() for _ in range(3)] == [0, 1, 2]
        await stream.aclose()
    elif how == "bare_break":  # closed once the event loop finalizes the loop's iterator
        async for item in pool.stream("endless", window=4):
            if item == 2:
                break
    else:
        first = asyncio.Event()

        async def read() -> None:
            async for _ in pool.stream("endless", window=4):
                first.set()

        task = asyncio.ensure_future(read())
        await asyncio.wait_for(first.wait(), WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the producer's generator was closed
    await until(lambda: server.stats.streams == 0)
    assert server.stats.cancels == 1  # by the cancel, not by a lost connection
    await until(lambda: pool.stats()["in_use"] == 0)
    assert shares(pool) == [0] and pool.stats()["total"] == 1


async def test_an_error_ends_the_stream_after_its_items_and_gives_the_member_back(server: IPCServer, make_pool) -> None:
    async def fails(msg: Message) -> AsyncIterator[int]:
        yield 1
        yield 2
        raise KeyError("gone")

    server.add_handler("fails", fails)
    pool = await make_pool()
    got = []
    with pytest.raises(HandlerError):
        async for item in pool.stream("fails"):
            got.append(item)
    assert got == [1, 2]
    assert shares(pool) == [0] and pool.stats()["in_use"] == 0


async def test_close_during_a_stream_ends_it_with_connection_lost_once(server: IPCServer, make_pool) -> None:
    closed = asyncio.Event()
    server.add_handler("endless", counting_until_closed(closed))
    pool = await make_pool()
    stream = pool.stream("endless", window=4)
    assert [await stream.__anext__() for _ in range(2)] == [0, 1]
    member = pool._members[0]
    await pool.close()
    got, errors = [], []
    try:
        async for item in stream:
            got.append(item)
    except ConnectionLost as exc:
        errors.append(exc)
    assert len(errors) == 1 and got == list(range(2, 2 + len(got)))  # what had arrived, then the error
    with pytest.raises(StopAsyncIteration):  # one error, then the end
        await stream.__anext__()
    assert member.shared == 0  # given back once
    assert pool.stats()["in_use"] == 0
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the server stopped the producer
    with pytest.raises(NotConnected):  # a stream after close()
        await pool.stream("endless").__anext__()


async def test_the_timeout_covers_the_wait_for_a_member(server: IPCServer, make_pool) -> None:
    server.add_handler("count", count)
    pool = await make_pool(min_connections=1, max_connections=1, acquire_timeout=5)
    held = await pool.acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout):
        await pool.stream("count", {"n": 1}, timeout=0.2).__anext__()
    assert 0.15 <= loop.time() - started < 2.0  # the stream's deadline, not the 5 s acquire_timeout
    assert pool.stats()["pending"] == 0
    pool.release(held)
    assert [i async for i in pool.stream("count", {"n": 3}, timeout=WAIT_S)] == [0, 1, 2]
    assert shares(pool) == [0]


async def test_arguments_are_checked_at_the_call(server, make_pool) -> None:
    server.add_handler("count", count)
    pool = await make_pool()
    for kwargs in ({"timeout": 0}, {"timeout": float("nan")}, {"idle_timeout": -1}, {"window": 0}, {"window": 2.5}, {"window": True}):
        with pytest.raises(ValueError):
            pool.stream("count", **kwargs)
    assert [i async for i in pool.stream("count", {"n": 3}, window=2.0, timeout=WAIT_S)] == [0, 1, 2]  # 2.0 is 2, as in Node
    with pytest.raises(ValueError):
        pool.stream("ticks.*")
    assert pool.stats()["in_use"] == 0
