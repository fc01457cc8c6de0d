"""Streams across cluster nodes when a node or NATS fails (docs/cluster.md
§3 Streams, §5), with a real nats-server and nodes in their own processes:
the producer's node SIGKILLed mid-stream (the consumer's loop ends
``responder_lost`` after the items that came, well before its own
deadline), the consumer's node SIGKILLed (the producer on the other node is
stopped), and NATS restarted under a stream that holds no credit (the
producer is stopped once the nodes are back)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message, ResponderLost
from ipc_server import IPCServer

from .conftest import counting_until_closed
from .nats_support import NatsServer, NodeProcess, clients, nats, node_process, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0
Nodes = Callable[..., Awaitable[IPCServer]]
Clients = Callable[..., Awaitable[IPCClient]]


async def test_the_producers_node_killed_mid_stream_ends_the_loop_with_responder_lost(
    nats: NatsServer, nodes: Nodes, node_process: Callable[..., Awaitable[NodeProcess]], clients: Clients  # noqa: F811
) -> None:
    a = await nodes("a")
    b = await node_process(nats.url, "--node-name", "b")
    consumer, producer = await clients(a.port), await clients(b.port, reconnect=False)
    started = asyncio.Event()

    async def endless(msg: Message) -> AsyncIterator[int]:
        for i in range(10):
            yield i
        started.set()
        await asyncio.Event().wait()
        yield -1

    await producer.serve("endless", endless)
    got: list[int] = []

    async def consume() -> None:
        async for item in consumer.stream("endless", timeout=60, idle_timeout=60, window=16):
            got.append(item)

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(started.wait(), WAIT_S)
    await until(lambda: len(got) == 10, "the items before the kill")
    await b.kill()
    with pytest.raises(ResponderLost):
        await asyncio.wait_for(task, WAIT_S)  # the node's silence (about 1.5 s), not the stream's own 60 s
    assert got == list(range(10))
    await until(lambda: not a.cluster.relay and not a.cluster.outgoing, "the stream is gone on a")


async def test_the_consumers_node_killed_mid_stream_stops_the_producer_on_the_other_node(
    nats: NatsServer, nodes: Nodes, node_process: Callable[..., Awaitable[NodeProcess]], clients: Clients  # noqa: F811
) -> None:
    a = await node_process(nats.url, "--node-name", "a")
    b = await nodes("b")
    closed = asyncio.Event()
    endless = counting_until_closed(closed)

    b.add_handler("endless", endless)
    await b.cluster.confirmed()
    consumer = await clients(a.port, reconnect=False)
    stream = consumer.stream("endless", window=4)
    assert [await stream.__anext__() for _ in range(3)] == [0, 1, 2]
    await a.kill()  # nobody will read its items, nor cancel it: b notices a's silence
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: b.stats.streams == 0 and not b.cluster.incoming, "the stream is gone on b")
    assert b.cluster.state()["streams_dropped"] == 1
    with contextlib.suppress(Exception):
        await stream.aclose()  # type: ignore[attr-defined]


async def test_a_stream_without_credit_across_a_nats_restart_is_stopped_at_its_producer(
    nats: NatsServer, nodes: Nodes, clients: Clients  # noqa: F811
) -> None:
    a, b = await nodes("a"), await nodes("b")
    consumer, producer = await clients(a.port), await clients(b.port)
    closed = asyncio.Event()
    endless = counting_until_closed(closed)

    await producer.serve("endless", endless)
    stream = consumer.stream("endless", window=2)  # no deadline; the consumer reads one item, then nothing
    assert await stream.__anext__() == 0
    await until(lambda: b.stats.stream_items == 2, "the window used up: the producer holds no credit")
    await nats.stop()  # a answers its consumer responder_lost; b has no item to send, so it holds the stream
    await until(lambda: not a.cluster.link.up and not b.cluster.link.up, "both nodes see NATS gone")
    assert not a.cluster.relay and b.cluster.incoming and not closed.is_set()
    await nats.start()
    # b names the stream to a again; a no longer waits for it and cancels it there
    await asyncio.wait_for(closed.wait(), 15)
    await until(lambda: b.stats.streams == 0 and not b.cluster.incoming, "the stream is gone on b")
    with pytest.raises(ResponderLost):
        async for _ in stream:
            pass
