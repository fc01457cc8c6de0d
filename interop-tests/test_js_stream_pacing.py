"""The Node client's side of a stream's pacing, through the real server
(docs/protocol.md §15.6): a Node responder whose generator never waits
still gives its event loop a turn every ``SLICE_ITEMS`` items. (The
server's and the Python responder's twins: tests/test_streams_pacing.py.)"""

from __future__ import annotations

from ipc_protocol.streams import MAX_WINDOW, SLICE_ITEMS


async def test_a_node_responder_that_never_waits_gives_its_loop_a_turn(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveStream", channel="node.burst", kind="burst")
    consumer = await py_client(server.port)
    n = 20 * SLICE_ITEMS
    got = [item async for item in consumer.stream("node.burst", n, window=MAX_WINDOW)]
    assert got == list(range(n))
    runs = await agent.wait_event("producerRuns")
    assert runs["maxRun"] <= SLICE_ITEMS  # without: promise jobs alone, until a write waits for the OS
