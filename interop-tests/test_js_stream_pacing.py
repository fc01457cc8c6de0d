"""The Node client's side of a stream's pacing, credit and deadline,
through the real server (docs/protocol.md §15.3, §15.5, §15.6, §12): a
Node responder whose generator never waits still gives its event loop a
turn every ``SLICE_ITEMS`` items; a credit sent right behind the request
counts at a Node responder; a Node stream held for a place under
``max_inflight_per_connection`` ends at its deadline. (The server's and
the Python client's twins: tests/test_streams_pacing.py,
tests/test_streams_credit.py, tests/test_limits_inflight.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ipc_protocol import Message
from ipc_protocol.streams import MAX_WINDOW, SLICE_ITEMS

from conftest import WAIT_S
from tests.conftest import RawPeer, frame
from tests.test_streams_credit import open_with_credit, read_stream


async def test_a_node_responder_that_never_waits_gives_its_loop_a_turn(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveStream", channel="node.burst", kind="burst")
    consumer = await py_client(server.port)
    n = 20 * SLICE_ITEMS
    got = [item async for item in consumer.stream("node.burst", n, window=MAX_WINDOW)]
    assert got == list(range(n))
    runs = await agent.wait_event("producerRuns")
    assert runs["maxRun"] <= SLICE_ITEMS  # without: promise jobs alone, until a write waits for the OS


async def test_a_credit_right_behind_the_request_counts_at_a_node_responder(server, node_agent):
    agent = await node_agent(server.port)
    # an async handler resolving to a generator: it streams a turn later, after the credit was read
    await agent.call("serveStream", channel="node.later", kind="asyncCount")
    peer = await RawPeer.open(server.port)
    try:
        peer.send(frame("request", "system", {"action": "connect", "connection_id": "raw", "protocol": 2, "features": ["cancel", "streams"]}, message_id="hello"))
        assert (await peer.recv()).payload["features"] == ["cancel", "streams"]
        peer.send_raw(open_with_credit("node.later", 4, window=1, grant=5))
        items, end = await read_stream(peer, "s1")  # without it: one item, then an idle timeout the server counts
        assert (items, end.message_type.value, end.error) == ([0, 1, 2, 3], "stream_end", None)
    finally:
        await peer.close()


async def test_a_node_stream_held_for_a_place_ends_at_its_deadline(start_server, node_agent, py_client):
    server = await start_server("--max-inflight", "2")
    producer = await py_client(server.port)
    ran = []

    async def endless(msg: Message) -> AsyncIterator[int]:
        while True:
            yield 0

    async def count(msg: Message) -> AsyncIterator[int]:
        ran.append(msg.payload)
        yield 0

    await producer.serve("endless", endless)
    await producer.serve("count", count)
    agent = await node_agent(server.port)
    for tag in ("a", "b"):  # the limit: both open, waiting for credit
        await agent.call("startStream", tag=tag, channel="endless", window=2, pauseAfter=1)
        await agent.wait_event("streamPaused")
    got = await agent.call("stream", channel="count", payload=1, timeoutMs=300, timeout=WAIT_S)
    assert got["error"] is not None and got["error"]["code"] == "timeout", got
    assert "while it waited for a place" in got["error"]["message"]
    assert 300 <= got["elapsedMs"] < WAIT_S * 1000
    for tag in ("a", "b"):
        await agent.call("breakStream", tag=tag)
    await agent.wait_events("streamDone", 2)
    assert ran == []  # it never ran
