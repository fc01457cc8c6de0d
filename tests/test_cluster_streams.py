"""Streams across cluster nodes through a real nats-server (docs/cluster.md
§3, Streams; docs/protocol.md §15): the consumer on node a, the producer
(a responder client or an in-process handler) on node b, with the
contract of one node: every item once and in order, credit end to end,
the end and errors, cancels both ways, deadlines, the producer's loss,
binary items, spreading over nodes (local first), and ``no_responders``
when no node serves the channel. Nodes and NATS failing under a stream:
test_cluster_streams_failures.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import HandlerError, Message, NoResponders, RemoteError, RequestTimeout, ResponderLost
from ipc_server import IPCServer

from .conftest import RawPeer, counting_until_closed, frame
from .nats_support import NatsServer, NodeProcess, clients, nats, node_process, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0
Nodes = Callable[..., Awaitable[IPCServer]]
Clients = Callable[..., Awaitable[IPCClient]]


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def two_nodes(nodes: Nodes) -> tuple[IPCServer, IPCServer]:
    return await nodes("a"), await nodes("b")


async def test_many_items_with_a_small_window_arrive_once_in_order_and_the_producer_never_runs_ahead(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer, producer = await clients(a.port), await clients(b.port)
    pulled = 0
    window = 4

    async def count(msg: Message) -> AsyncIterator[int]:
        nonlocal pulled
        for i in range(msg.payload):
            pulled += 1
            yield i

    await producer.serve("count", count)
    got: list[int] = []
    async for item in consumer.stream("count", 2000, window=window):
        got.append(item)
        # The producer pulls an item only with credit: never more than the window ahead of what was taken.
        assert pulled <= len(got) + window
    assert got == list(range(2000))
    await until(lambda: b.stats.streams == 0 and not a.cluster.relay and not b.cluster.incoming, "the stream is gone on both nodes")
    assert b.stats.stream_items == 2000 and a.cluster.relay.items_in == 2000 and b.cluster.relay.items_out == 2000
    assert a.stats.streams_opened == 0 and b.stats.streams_opened == 1  # run on b, relayed by a


async def test_streams_go_to_a_local_producer_first_else_spread_over_the_nodes_that_serve_them(nodes: Nodes, clients: Clients) -> None:
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    consumer = await clients(a.port)
    by: list[str] = []

    def producer_on(name: str) -> Callable[[Message], AsyncIterator[str]]:
        async def produce(msg: Message) -> AsyncIterator[str]:
            by.append(name)
            for _ in range(3):
                yield name

        return produce

    for node, name in ((b, "b"), (c, "c")):
        await (await clients(node.port)).serve("spread", producer_on(name))
    for _ in range(20):
        items = await collect(consumer.stream("spread"))
        assert len(items) == 3 and len(set(items)) == 1
    assert sorted(set(by)) == ["b", "c"]  # NATS's queue group gave each node some (2^-19 that it did not)
    local = await clients(a.port)
    await local.serve("spread", producer_on("a"))
    by.clear()
    for _ in range(5):
        assert await collect(consumer.stream("spread")) == ["a"] * 3
    assert by == ["a"] * 5  # a producer on the consumer's node first, as for requests


async def test_an_in_process_generator_on_another_node_streams_with_its_end_and_its_error(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)

    @b.handler("squares")
    def squares(msg: Message) -> Any:  # a sync generator: one next() at a time in b's worker threads
        for i in range(msg.payload):
            yield i * i

    @b.handler("fails")
    async def fails(msg: Message) -> AsyncIterator[int]:
        yield 1
        yield 2
        raise ValueError("broken after two")

    @b.handler("plain")
    async def plain(msg: Message) -> Any:  # not a generator: a one-item stream (§15.3 item 4)
        return {"echo": msg.payload}

    await b.cluster.confirmed()
    consumer = await clients(a.port)
    assert await collect(consumer.stream("squares", 50, window=3)) == [i * i for i in range(50)]
    assert await collect(consumer.stream("squares", 0)) == []
    assert await collect(consumer.stream("plain", "x")) == [{"echo": "x"}]
    got: list[int] = []
    with pytest.raises(HandlerError, match="broken after two"):
        async for item in consumer.stream("fails"):
            got.append(item)
    assert got == [1, 2]  # the items before the error, then the error
    await until(lambda: b.stats.streams == 0 and not a.cluster.relay, "the streams are gone")


async def test_an_in_process_generator_with_a_large_window_waits_for_the_link_instead_of_running_into_its_bound(nodes: Nodes, clients: Clients) -> None:
    a = await nodes("a")
    b = await nodes("b", cluster_max_pending_bytes=1 << 20)
    item = "x" * 16_000
    count = 3000  # 48 MB through a link bound to 1 MiB (2 MiB for stream items)

    @b.handler("flood")
    async def flood(msg: Message) -> AsyncIterator[str]:  # never waits: as fast as the node can send
        for _ in range(count):
            yield item

    await b.cluster.confirmed()
    consumer = await clients(a.port)
    got = 0
    async for value in consumer.stream("flood", window=2**31 - 1, timeout=WAIT_S * 3):
        assert value == item
        got += 1
    assert got == count
    assert b.cluster.link.refused == 0  # nothing ran into the bound


async def test_binary_items_cross_nodes(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer, producer = await clients(a.port), await clients(b.port)
    chunks = [bytes([i]) * (1 + i * 997) for i in range(40)] + [b"", bytes(range(256)) * 1024]

    async def file(msg: Message) -> AsyncIterator[Any]:
        for i, chunk in enumerate(chunks):
            yield chunk if i % 2 else {"i": i, "chunk": chunk}

    await producer.serve("file", file)
    got = await collect(consumer.stream("file", window=2))
    assert got == [c if i % 2 else {"i": i, "chunk": c} for i, c in enumerate(chunks)]


async def test_credit_granted_before_the_first_item_and_past_the_maximum(nodes: Nodes, clients: Clients) -> None:
    """Input a real client never sends (a raw consumer on a): an early grant
    reaches the producer's node with the first item; a grant past 2^31-1
    fails the stream bad_message and cancels the producer (§15.3 item 5)."""
    a, b = await two_nodes(nodes)
    producer = await clients(b.port)
    closed = asyncio.Event()

    async def numbers(msg: Message) -> AsyncIterator[int]:
        try:
            for i in range(msg.payload):
                yield i
        finally:
            closed.set()

    await producer.serve("numbers", numbers)
    peer = await RawPeer.open(a.port)
    try:
        peer.send(frame("request", "system", {"action": "connect", "connection_id": "raw", "protocol": 2, "features": ["cancel", "streams"]}, message_id="hello"))
        assert (await peer.recv()).payload["features"] == ["cancel", "streams"]
        peer.send(frame("request", "numbers", 30, message_id="s1", window=1, idle_timeout_ms=30_000))
        peer.send(frame("credit", "numbers", reply_to="s1", window=5))  # before any item: owed until the first names where
        first = [await peer.recv() for _ in range(6)]  # the window, then the early grant
        assert [(m.message_type, m.payload) for m in first] == [("stream_item", i) for i in range(6)]
        peer.send(frame("credit", "numbers", reply_to="s1", window=25))  # one more: the producer learns of its end by pulling once more
        rest = [await peer.recv() for _ in range(25)]
        assert [m.payload for m in rest[:24]] == list(range(6, 30)) and rest[24].message_type == "stream_end"
        await asyncio.wait_for(closed.wait(), WAIT_S)

        closed.clear()
        peer.send(frame("request", "numbers", 10**9, message_id="s2", window=1, idle_timeout_ms=30_000))
        assert (await peer.recv()).payload == 0
        for _ in range(2):  # the second passes the maximum whatever came meanwhile
            peer.send(frame("credit", "numbers", reply_to="s2", window=2**31 - 1))
        failed = await peer.recv_until(lambda m: m.message_type == "response")
        assert failed.reply_to == "s2" and failed.error is not None and failed.error.code == "bad_message"
        await asyncio.wait_for(closed.wait(), WAIT_S)
        await until(lambda: b.stats.streams == 0 and not b.cluster.incoming and not a.cluster.relay, "the stream is gone on both nodes")
    finally:
        await peer.close()


@pytest.mark.parametrize("where", ["responder", "in-process"])
async def test_the_consumer_leaving_the_loop_cancels_the_producer_on_the_other_node(where: str, nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer = await clients(a.port)
    closed = asyncio.Event()
    endless = counting_until_closed(closed)

    if where == "in-process":
        b.add_handler("endless", endless)
        await b.cluster.confirmed()
    else:
        await (await clients(b.port)).serve("endless", endless)
    async for item in consumer.stream("endless", window=8):
        if item == 100:
            break
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: b.stats.streams == 0 and not b.cluster.incoming and not a.cluster.relay, "the stream is gone on both nodes")
    assert (await consumer.system("ping"))["status"] == "pong"


async def test_the_consumers_connection_lost_stops_the_producer_on_the_other_node(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer, producer = await clients(a.port), await clients(b.port)
    closed = asyncio.Event()
    endless = counting_until_closed(closed)

    await producer.serve("endless", endless)
    stream = consumer.stream("endless", window=4)
    assert await stream.__anext__() == 0
    consumer._link.conn.abort()  # type: ignore[union-attr]
    with contextlib.suppress(Exception):
        async for _ in stream:
            pass
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: b.stats.streams == 0 and not b.cluster.incoming, "the stream is gone on b")


async def test_a_producer_that_disconnects_ends_the_consumers_loop_with_responder_lost(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer, producer = await clients(a.port), await clients(b.port)
    started = asyncio.Event()

    async def endless(msg: Message) -> AsyncIterator[int]:
        yield 0
        started.set()
        await asyncio.Event().wait()
        yield 1

    await producer.serve("endless", endless)
    got: list[int] = []

    async def consume() -> None:
        async for item in consumer.stream("endless", timeout=60):
            got.append(item)

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(started.wait(), WAIT_S)
    await producer.disconnect()
    with pytest.raises(ResponderLost):
        await asyncio.wait_for(task, WAIT_S)  # at once, well before the stream's own 60 s
    assert got == [0]
    await until(lambda: not a.cluster.relay and not b.cluster.incoming, "the stream is gone on both nodes")


async def test_an_item_larger_than_nats_accepts_fails_the_stream_too_large_and_stops_the_producer(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer, producer = await clients(a.port), await clients(b.port)
    closed = asyncio.Event()

    async def big(msg: Message) -> AsyncIterator[bytes]:
        try:
            yield b"small"
            yield bytes(b.cluster.link.max_payload + 1)  # nats-server's max_payload (1 MiB unless raised)
            yield b"never"
        finally:
            closed.set()

    await producer.serve("big", big)
    got: list[bytes] = []
    with pytest.raises(RemoteError) as failed:
        async for item in consumer.stream("big"):
            got.append(item)
    assert failed.value.code == "too_large" and got == [b"small"]
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: b.stats.streams == 0 and not b.cluster.incoming and not a.cluster.relay, "the stream is gone on both nodes")


async def test_a_stream_requested_before_its_producer_registers_waits_within_the_grace(nodes: Nodes, clients: Clients) -> None:
    a = await nodes("a", no_responders_grace_s=10)  # the start's grace (protocol.md §13.2), ample on a loaded machine
    b = await nodes("b")
    consumer, producer = await clients(a.port), await clients(b.port)
    task = asyncio.ensure_future(collect(consumer.stream("late", 5, timeout=15)))
    await until(lambda: a.cluster.outgoing.retried >= 1, "NATS found no node for it, and a sends it again")

    async def late(msg: Message) -> AsyncIterator[int]:
        for i in range(msg.payload):
            yield i

    await producer.serve("late", late)
    assert await asyncio.wait_for(task, WAIT_S) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("deadline", ["timeout", "idle_timeout"])
async def test_deadlines_end_a_stream_across_nodes_and_stop_its_producer(deadline: str, nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer, producer = await clients(a.port), await clients(b.port)
    closed = asyncio.Event()

    async def stalls(msg: Message) -> AsyncIterator[int]:
        try:
            yield 0
            await asyncio.Event().wait()
            yield 1
        finally:
            closed.set()

    await producer.serve("stalls", stalls)
    got: list[int] = []
    with pytest.raises(RequestTimeout):
        async for item in consumer.stream("stalls", **{deadline: 1.0}):  # type: ignore[arg-type]  # the first item well within it
            got.append(item)
    assert got == [0]
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: b.stats.streams == 0 and not b.cluster.incoming and not a.cluster.relay, "the stream is gone on both nodes")


async def test_no_producer_on_any_node_is_no_responders(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    consumer = await clients(a.port)
    with pytest.raises(NoResponders, match="on any node"):
        await collect(consumer.stream("nobody.streams"))
    assert not a.cluster.relay and not a.cluster.outgoing

