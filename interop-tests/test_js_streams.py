"""Streams across languages through the real server (docs/protocol.md §15):
Python in-process generators and Python responders to Node consumers, Node
responders (``async function*``, ``function*``, an ``async`` handler
resolving to a generator, typed producers) to Python consumers,
Node to Node; the end, errors mid-stream, deadlines, the consumer leaving
early, the producer leaving, and a stalled consumer that holds up nothing
else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_protocol import BadRequest, HandlerError, Message, RequestTimeout, ResponderLost

from conftest import WAIT_S
from tests.conftest import counting_until_closed


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def test_node_streams_from_python_in_process_generators(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    got = await agent.call("stream", channel="py.count", payload=300, window=16)
    assert (got["items"], got["error"]) == (list(range(300)), None)
    got = await agent.call("stream", channel="py.sync_count", payload=40, window=3)
    assert got["items"] == list(range(40))
    got = await agent.call("stream", channel="py.stream_fail")
    assert got["items"] == ["before"]
    assert (got["error"]["code"], got["error"]["remoteType"], got["error"]["message"]) == ("handler_error", "LookupError", "mid-stream")
    got = await agent.call("stream", channel="py.echo", payload={"one": "item"})  # a plain handler: one item
    assert got["items"] == [{"one": "item"}]


async def test_python_responder_streams_to_node(server, node_agent, py_client):
    producer = await py_client(server.port)
    closed = asyncio.Event()

    async def ticks(msg: Message) -> AsyncIterator[dict[str, int]]:
        try:
            for i in range(msg.payload):
                yield {"tick": i}
        finally:
            closed.set()

    await producer.serve("ticks", ticks)
    agent = await node_agent(server.port)
    got = await agent.call("stream", channel="ticks", payload=500)
    assert got["items"] == [{"tick": i} for i in range(500)]
    await asyncio.wait_for(closed.wait(), WAIT_S)


async def test_node_responder_streams_to_python(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveStream", channel="node.count", kind="count")
    await agent.call("serveStream", channel="node.fail", kind="failAfter")
    consumer = await py_client(server.port)
    assert await collect(consumer.stream("node.count", 700, window=8)) == list(range(700))
    got: list[int] = []
    with pytest.raises(HandlerError) as info:
        async for item in consumer.stream("node.fail", 3):
            got.append(item)
    assert got == [0, 1, 2]
    assert (info.value.remote_type, info.value.message) == ("TypeError", "failed after 3")


async def test_a_node_function_star_responder_streams_to_python(server, node_agent, py_client):
    # A sync generator streams as an async one does (and as Python's plain
    # generators do): within credit, to its end or its error, closed by a cancel.
    agent = await node_agent(server.port)
    for kind in ("syncCount", "syncFailAfter", "syncEndless"):
        await agent.call("serveStream", channel=f"node.{kind}", kind=kind)
    consumer = await py_client(server.port)
    assert await collect(consumer.stream("node.syncCount", 700, window=8)) == list(range(700))
    got: list[int] = []
    with pytest.raises(HandlerError) as info:
        async for item in consumer.stream("node.syncFailAfter", 3):
            got.append(item)
    assert got == [0, 1, 2]
    assert (info.value.remote_type, info.value.message) == ("TypeError", "failed after 3")
    async for item in consumer.stream("node.syncEndless", window=4):
        if item == 10:
            break
    closed = await agent.wait_event("producerClosed")
    assert closed["aborted"] is True and closed["reason"]["code"] == "cancelled"
    assert closed["pulled"] <= 11 + 4  # never more than taken plus the window


async def test_a_node_async_handler_resolving_to_a_generator_and_a_typed_producer_stream_to_python(server, node_agent, py_client):
    # Python awaits a handler's result and streams a generator; Node does too.
    # A typed producer is checked on its request alone, and gets ctx.signal.
    agent = await node_agent(server.port)
    await agent.call("serveStream", channel="node.asyncCount", kind="asyncCount")
    schema = {"request": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}, "response": {"type": "integer"}}
    await agent.call("serveStream", channel="node.typedCount", kind="count", schema=schema)
    await agent.call("serveStream", channel="node.typedEndless", kind="endless", schema={"request": {"type": "null"}, "response": {"type": "integer"}})
    consumer = await py_client(server.port)
    assert await collect(consumer.stream("node.asyncCount", 300, window=8)) == list(range(300))
    assert await collect(consumer.stream("node.typedCount", {"n": 5})) == list(range(5))
    with pytest.raises(BadRequest):
        await collect(consumer.stream("node.typedCount", {"n": "five"}))
    async with consumer.stream("node.typedEndless", None, window=4) as stream:
        async for item in stream:
            if item == 5:
                break
    closed = await agent.wait_event("producerClosed")
    assert closed["aborted"] is True and closed["reason"]["code"] == "cancelled"  # the typed producer's ctx.signal


async def test_node_streams_to_node(server, node_agent):
    producer, consumer = await node_agent(server.port), await node_agent(server.port)
    await producer.call("serveStream", channel="n2n", kind="count", size=100)
    got = await consumer.call("stream", channel="n2n", payload=1000, collect=False)
    assert (got["count"], got["error"]) == (1000, None)


async def test_a_node_consumer_that_breaks_closes_the_python_generator(server, node_agent, py_client):
    producer = await py_client(server.port)
    closed = asyncio.Event()
    await producer.serve("endless", counting_until_closed(closed))
    agent = await node_agent(server.port)
    got = await agent.call("stream", channel="endless", breakAfter=25)
    assert got["items"] == list(range(25)) and got["error"] is None
    await asyncio.wait_for(closed.wait(), WAIT_S)
    stats = await producer.system("stats")
    assert stats["cancels"] == 1 and stats["streams"] == 0


async def test_a_python_consumer_that_breaks_closes_the_node_generator(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveStream", channel="node.endless", kind="endless")
    consumer = await py_client(server.port)
    async for item in consumer.stream("node.endless", window=4):
        if item == 10:
            break
    closed = await agent.wait_event("producerClosed")
    assert closed["aborted"] is True and closed["reason"]["code"] == "cancelled"
    assert closed["pulled"] <= 11 + 4  # never more than taken plus the window


async def test_the_deadline_and_the_idle_timeout_cross_languages(server, node_agent, py_client):
    producer = await py_client(server.port)
    cancelled = asyncio.Event()

    async def slow(msg: Message) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await producer.serve("slow", slow)
    agent = await node_agent(server.port)
    got = await agent.call("stream", channel="slow", timeoutMs=300)
    assert got["error"]["code"] == "timeout" and got["items"] == list(range(len(got["items"])))
    assert 250 <= got["elapsedMs"] < 3000
    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    # Node produces one item, then nothing: the Python consumer's idle timeout ends it.
    await agent.call("serveStream", channel="node.stall", kind="stall")
    consumer = await py_client(server.port)
    items: list[str] = []
    with pytest.raises(RequestTimeout):
        async for item in consumer.stream("node.stall", idle_timeout=0.2):
            items.append(item)
    assert items == ["first"]
    aborted = await agent.wait_event("producerAborted")
    assert aborted["reason"]["code"] == "timeout"


async def test_a_producer_that_disconnects_ends_the_loop_with_responder_lost(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveStream", channel="node.endless", kind="endless")
    consumer = await py_client(server.port)
    got: list[int] = []
    with pytest.raises(ResponderLost):
        async for item in consumer.stream("node.endless", window=2):
            got.append(item)
            if item == 5:
                await agent.close()  # the Node process is gone
    assert got[:6] == list(range(6))
    # And the other way: a Python producer that disconnects, a Node consumer.
    producer = await py_client(server.port)
    started = asyncio.Event()

    async def endless(msg: Message) -> AsyncIterator[int]:
        yield 0
        started.set()
        await asyncio.Event().wait()
        yield 1

    await producer.serve("py.endless", endless)
    node = await node_agent(server.port)
    await node.call("startStream", tag="s", channel="py.endless", pauseAfter=1000)
    await asyncio.wait_for(started.wait(), WAIT_S)
    await producer.disconnect()
    done = await node.wait_event("streamDone")
    assert done["items"] == [0] and done["error"]["code"] == "responder_lost"


async def test_a_stalled_node_consumer_holds_up_nothing_else(server, node_agent, py_client):
    producer = await py_client(server.port)
    pulled = 0
    window = 8

    async def endless(msg: Message) -> AsyncIterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield "x" * 100

    await producer.serve("endless", endless)
    await producer.serve("py.echo", lambda msg: msg.payload)
    agent = await node_agent(server.port)
    await agent.call("serve", channel="node.echo", kind="echo")
    await agent.call("startStream", tag="slow", channel="endless", window=window, pauseAfter=1)
    await agent.wait_event("streamPaused")
    async with asyncio.timeout(WAIT_S):
        while pulled < window:
            await asyncio.sleep(0.005)
    # The stalled stream's connections carry other traffic meanwhile, both ways.
    for i in range(50):
        assert (await agent.call("request", channel="py.echo", payload=i))["payload"] == i
        assert await producer.request("node.echo", i) == i
    assert pulled == window  # still held at its credit
    await agent.call("breakStream", tag="slow")
    done = await agent.wait_event("streamDone")
    assert done["count"] == 1 and done["error"] is None
