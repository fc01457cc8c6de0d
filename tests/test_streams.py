"""Streams over real loopback TCP, Python to Python (docs/protocol.md §15):
in-process generators and responder clients, the end, errors mid-stream,
deadlines and idle timeouts, the consumer leaving early, the producer
leaving (flow control and negotiation: tests/test_streams_flow.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import BadRequest, ConnectionLost, HandlerError, Message, RequestTimeout, ResponderLost
from ipc_server import IPCServer

from .conftest import WAIT_S, counting_until_closed


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def until(pred: Callable[[], bool], what: str = "a condition", timeout: float = WAIT_S) -> None:
    """Wait (bounded) for ``pred``, yielding to the loop between checks."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


@pytest.fixture
async def pair(make_client: Callable[..., Any]) -> tuple[IPCClient, IPCClient]:
    """A consumer and a producer client on the same server."""
    return await make_client(), await make_client()


# -- who streams ---------------------------------------------------------------------


async def test_an_in_process_async_generator_streams_then_ends(server: IPCServer, make_client: Callable[..., Any]) -> None:
    @server.handler("local.count")
    async def count(msg: Message) -> AsyncIterator[dict[str, int]]:
        for i in range(msg.payload["n"]):
            yield {"i": i}

    client = await make_client()
    assert await collect(client.stream("local.count", {"n": 200})) == [{"i": i} for i in range(200)]
    await until(lambda: server.stats.streams == 0)
    assert server.stats.streams_opened == 1 and server.stats.stream_items == 200


async def test_an_in_process_sync_generator_runs_in_a_thread_and_never_runs_ahead(server: IPCServer, make_client: Callable[..., Any]) -> None:
    import threading

    pulled: list[int] = []
    threads: set[str] = set()

    @server.handler("local.sync")
    def numbers(msg: Message) -> Any:
        for i in range(1000):
            threads.add(threading.current_thread().name)
            pulled.append(i)
            yield i

    client = await make_client()
    got = []
    async for item in client.stream("local.sync", window=4):
        got.append(item)
        # Never more pulled than taken plus the window (credit bounds the generator).
        assert len(pulled) <= len(got) + 4
        if len(got) == 50:
            break
    assert got == list(range(50))
    assert threads and threading.main_thread().name not in threads


async def test_a_responder_streams_python_to_python(pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair

    async def ticks(msg: Message) -> AsyncIterator[int]:
        for i in range(msg.payload):
            yield i

    def squares(msg: Message) -> Any:  # a sync generator, in a worker thread
        for i in range(msg.payload):
            yield i * i

    await producer.serve("ticks", ticks)
    await producer.serve("squares", squares)
    assert await collect(consumer.stream("ticks", 500)) == list(range(500))
    assert await collect(consumer.stream("squares", 30, window=1)) == [i * i for i in range(30)]
    assert await collect(consumer.stream("ticks", 0)) == []


async def test_a_handler_that_does_not_stream_is_a_one_item_stream(server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair

    @server.handler("local.plain")
    async def plain(msg: Message) -> int:
        return 42

    await producer.serve("remote.plain", lambda msg: {"echo": msg.payload})
    assert await collect(consumer.stream("local.plain")) == [42]
    assert await collect(consumer.stream("remote.plain", "x")) == [{"echo": "x"}]


async def test_a_streaming_handler_asked_with_a_plain_request_says_so(server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()

    @server.handler("local.gen")
    async def gen(msg: Message) -> AsyncIterator[int]:
        yield 1

    async def remote(msg: Message) -> AsyncIterator[int]:
        try:
            yield 1
        finally:
            closed.set()

    await producer.serve("remote.gen", remote)
    for channel in ("local.gen", "remote.gen"):
        with pytest.raises(BadRequest, match="streams its answer: call stream"):
            await consumer.send_request(channel, None)


# -- how a stream ends -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["in-process", "responder"])
async def test_an_error_mid_stream_comes_after_the_items_before_it(where: str, server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair

    async def failing(msg: Message) -> AsyncIterator[int]:
        yield 1
        yield 2
        raise KeyError("no third")

    if where == "in-process":
        server.add_handler("failing", failing)
    else:
        await producer.serve("failing", failing)
    got: list[int] = []
    with pytest.raises(HandlerError) as info:
        async for item in consumer.stream("failing"):
            got.append(item)
    assert got == [1, 2]
    assert info.value.remote_type == "KeyError"


@pytest.mark.parametrize("where", ["in-process", "responder"])
async def test_the_whole_stream_has_a_deadline(where: str, server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()

    async def forever(msg: Message) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    if where == "in-process":
        server.add_handler("forever", forever)
    else:
        await producer.serve("forever", forever)
    got: list[int] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout):
        async for item in consumer.stream("forever", timeout=0.3):
            got.append(item)
    assert 0.25 <= loop.time() - started < 2.0
    assert got and got == list(range(len(got)))
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the producer was stopped too


@pytest.mark.parametrize("where", ["in-process", "responder"])
async def test_the_idle_timeout_ends_a_silent_stream(where: str, server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    cancelled = asyncio.Event()

    async def stalls(msg: Message) -> AsyncIterator[str]:
        yield "first"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield "never"

    if where == "in-process":
        server.add_handler("stalls", stalls)
    else:
        await producer.serve("stalls", stalls)
    got: list[str] = []
    with pytest.raises(RequestTimeout, match="idle"):
        async for item in consumer.stream("stalls", idle_timeout=0.2):
            got.append(item)
    assert got == ["first"]
    await asyncio.wait_for(cancelled.wait(), WAIT_S)


async def test_a_consumer_that_does_not_read_is_never_idle(pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    ended = asyncio.Event()

    async def fast(msg: Message) -> AsyncIterator[int]:
        try:
            for i in range(20):
                yield i
        finally:
            ended.set()

    await producer.serve("fast", fast)
    stream = consumer.stream("fast", window=2, idle_timeout=0.1)
    assert await stream.__anext__() == 0
    # The producer holds no credit now: the idle clock stops while we do not read.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(ended.wait()), 0.5)
    assert [i async for i in stream] == list(range(1, 20))


async def test_a_producer_that_disconnects_ends_the_loop_with_responder_lost(pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    started = asyncio.Event()

    async def endless(msg: Message) -> AsyncIterator[int]:
        yield 0
        started.set()
        await asyncio.Event().wait()
        yield 1

    await producer.serve("endless", endless)
    got: list[int] = []

    async def consume() -> None:
        async for item in consumer.stream("endless"):
            got.append(item)

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(started.wait(), WAIT_S)
    await producer.disconnect()
    with pytest.raises(ResponderLost):
        await asyncio.wait_for(task, WAIT_S)
    assert got == [0]


async def test_the_consumers_connection_lost_ends_its_loop_and_stops_the_producer(server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()
    endless = counting_until_closed(closed)

    await producer.serve("endless", endless)
    stream = consumer.stream("endless", window=4)
    assert await stream.__anext__() == 0
    consumer._link.conn.abort()  # type: ignore[union-attr]
    with pytest.raises(ConnectionLost):
        async for _ in stream:
            pass
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: server.stats.streams == 0)


# -- leaving early -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["in-process", "responder"])
async def test_breaking_out_of_the_loop_closes_the_producers_generator(where: str, server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()
    endless = counting_until_closed(closed)

    if where == "in-process":
        server.add_handler("endless", endless)
    else:
        await producer.serve("endless", endless)
    async for item in consumer.stream("endless"):
        if item == 100:
            break
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: server.stats.streams == 0)
    assert server.stats.cancels == 1
    # The connection still works, and what crossed the cancel was dropped quietly.
    assert (await consumer.system("ping"))["status"] == "pong"


async def test_cancelling_the_consuming_task_cancels_the_stream(pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()
    first = asyncio.Event()

    async def slow(msg: Message) -> AsyncIterator[int]:
        try:
            yield 0
            await asyncio.Event().wait()
            yield 1
        finally:
            closed.set()

    await producer.serve("slow", slow)

    async def consume() -> None:
        async for _ in consumer.stream("slow"):
            first.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(first.wait(), WAIT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), WAIT_S)
    assert len(consumer._streams) == 0


async def test_aclose_cancels_the_stream(pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()

    def numbers(msg: Message) -> Any:
        try:
            yield from range(10**9)
        finally:
            closed.set()

    await producer.serve("numbers", numbers)
    async with contextlib.aclosing(consumer.stream("numbers", window=8)) as stream:  # type: ignore[type-var]
        assert [await stream.__anext__() for _ in range(3)] == [0, 1, 2]
    await asyncio.wait_for(closed.wait(), WAIT_S)


async def test_a_break_cancels_the_stream_while_it_is_still_referenced(server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()
    await producer.serve("endless", counting_until_closed(closed))
    stream = consumer.stream("endless", window=4)
    async for item in stream:
        if item == 2:
            break
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the loop's iterator, not the stream, was let go
    await until(lambda: server.stats.streams == 0)
    assert server.stats.cancels == 1
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_leaving_async_with_cancels_the_stream_it_still_references(server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    closed = asyncio.Event()
    await producer.serve("endless", counting_until_closed(closed))
    async with consumer.stream("endless", window=4) as stream:
        async for item in stream:
            if item == 2:
                break
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: server.stats.streams == 0)
    assert server.stats.cancels == 1
    with pytest.raises(StopAsyncIteration):  # still referenced, and closed
        await stream.__anext__()


async def test_a_cancel_frees_the_handler_slot_of_a_generator_that_awaits(pair: tuple[IPCClient, IPCClient], make_client: Callable[..., Any]) -> None:
    consumer, _ = pair
    producer = await make_client(max_concurrent_handlers=1)
    closed = asyncio.Event()

    async def hang(msg: Message) -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.Event().wait()  # not at a yield: the task's cancel reaches it
        finally:
            closed.set()

    await producer.serve("hang", hang)
    await producer.serve("echo", lambda msg: msg.payload)
    stream = consumer.stream("hang")
    assert await stream.__anext__() == "first"
    await stream.aclose()
    await asyncio.wait_for(closed.wait(), WAIT_S)
    assert await consumer.request("echo", "hi", timeout=WAIT_S) == "hi"


@pytest.mark.parametrize("option", ["timeout", "idle_timeout"])
async def test_an_infinite_timeout_is_refused_at_the_call(pair: tuple[IPCClient, IPCClient], option: str) -> None:
    consumer, _ = pair
    with pytest.raises(ValueError, match=option):
        consumer.stream("endless", **{option: float("inf")})


async def test_a_handler_that_returns_a_stream_relays_it(pair: tuple[IPCClient, IPCClient], make_client: Callable[..., Any]) -> None:
    consumer, producer = pair
    relay = await make_client()
    await producer.serve("three", lambda msg: (i for i in range(3)))
    await relay.serve("relay", lambda msg: relay.stream("three"))
    assert await collect(consumer.stream("relay")) == [0, 1, 2]
