"""stream() of the Node pool and load-balanced client against the real Python
server (docs/protocol.md §15, docs/resilience.md §7, §8), the producers
Python responders: the items in order on a pooled member, a break that
cancels at the producer and gives the member back, failover to the next
server only before the first item (never after: a server killed
mid-stream is the reader's connection_lost), and close() during a stream.

The Node side is ``node/pool_agent.js`` (``startStream``, events
``streamPaused`` / ``streamDone``); the same behaviours on scripted peers
are js-client/test/pool_streams.test.js and balanced_streams.test.js."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from conftest import WAIT_S
from test_js_pool import pool_agent  # noqa: F401 - a fixture

NO_GRACE = ("--no-responders-grace", "0")


def producers(port: int, calls: Counter[int], closed: asyncio.Event, gate: asyncio.Event | None = None) -> Callable[[Any], AsyncIterator[str]]:
    """A Python producer yielding ``"<port>:0"``, ``"<port>:1"``... (``payload``
    items, or endlessly when None); with a ``gate``, it waits for it after
    its first item. ``closed`` is set once its generator is closed."""

    async def produce(msg: Any) -> AsyncIterator[str]:
        calls[port] += 1
        try:
            i = 0
            while msg.payload is None or i < msg.payload:
                yield f"{port}:{i}"
                i += 1
                if gate is not None:
                    await gate.wait()
        finally:
            closed.set()

    return produce


async def test_pool_streams_in_order_and_a_break_cancels_at_the_python_producer(start_server, py_client, pool_agent):  # noqa: F811
    srv = await start_server()
    calls: Counter[int] = Counter()
    closed = asyncio.Event()
    py = await py_client(srv.port)
    await py.serve("feed.ticks", producers(srv.port, calls, closed))
    agent = await pool_agent(port=srv.port, minConnections=1, maxConnections=1)
    await agent.call("start")

    await agent.call("startStream", tag="all", channel="feed.ticks", payload=300, window=16, timeoutMs=5000)
    done = await agent.wait_event("streamDone", lambda e: e["tag"] == "all")
    assert done == {"event": "streamDone", "tag": "all", "items": [f"{srv.port}:{i}" for i in range(300)], "error": None}
    closed.clear()

    await agent.call("startStream", tag="three", channel="feed.ticks", payload=None, window=4, breakAfter=3)
    done = await agent.wait_event("streamDone", lambda e: e["tag"] == "three")
    assert (done["items"], done["error"]) == ([f"{srv.port}:{i}" for i in range(3)], None)
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the cancel reached the Python generator
    stats = await agent.call("stats")
    assert (stats["total"], stats["inUse"], stats["totalCreated"]) == (1, 0, 1)


async def test_balanced_stream_fails_over_only_before_its_first_item(start_server, py_client, pool_agent):  # noqa: F811
    a, b = await start_server(*NO_GRACE), await start_server(*NO_GRACE)
    calls: Counter[int] = Counter()
    gate, closed = asyncio.Event(), asyncio.Event()
    py_b = await py_client(b.port)
    await py_b.serve("feed.ticks", producers(b.port, calls, closed))  # a has nobody for it
    agent = await pool_agent("balanced", servers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], healthCheckInterval=60_000)
    await agent.call("start")
    await agent.call("startStream", tag="over", channel="feed.ticks", payload=3, timeoutMs=5000)
    done = await agent.wait_event("streamDone", lambda e: e["tag"] == "over")
    assert (done["items"], done["error"]) == ([f"{b.port}:{i}" for i in range(3)], None)
    sa, sb = await agent.call("serverStats")
    assert (sa["requests"], sa["errors"], sa["healthy"], sb["requests"], sb["errors"]) == (1, 1, True, 1, 0)

    # Both serve it now; the server that gives the first item is killed mid-stream.
    py_a = await py_client(a.port)
    await py_a.serve("feed.gated", producers(a.port, calls, closed, gate))
    await py_b.serve("feed.gated", producers(b.port, calls, closed, gate))
    calls.clear()
    await agent.call("startStream", tag="killed", channel="feed.gated", payload=5, timeoutMs=5000, pauseAfter=1)
    paused = await agent.wait_event("streamPaused", lambda e: e["tag"] == "killed")
    first_port = int(paused["items"][0].split(":")[0])
    victim = a if first_port == a.port else b
    await victim.kill()
    await agent.wait_event("server_down", lambda e: e["port"] == victim.port)
    await agent.call("resumeStream", tag="killed")
    done = await agent.wait_event("streamDone", lambda e: e["tag"] == "killed")
    assert done["items"] == [f"{first_port}:0"]
    assert done["error"]["code"] == "connection_lost"  # the reader's, though a call would fail over on it
    assert calls == Counter({first_port: 1})  # never started again on the other server
    gate.set()


async def test_closing_the_balanced_client_during_a_stream_ends_it_with_connection_lost(start_server, py_client, pool_agent):  # noqa: F811
    srv = await start_server()
    calls: Counter[int] = Counter()
    gate, closed = asyncio.Event(), asyncio.Event()
    py = await py_client(srv.port)
    await py.serve("feed.gated", producers(srv.port, calls, closed, gate))
    agent = await pool_agent("balanced", servers=[f"127.0.0.1:{srv.port}"], healthCheckInterval=60_000)
    await agent.call("start")
    await agent.call("startStream", tag="closed", channel="feed.gated", payload=5, pauseAfter=1)
    await agent.wait_event("streamPaused", lambda e: e["tag"] == "closed")
    await agent.call("close")
    await agent.call("resumeStream", tag="closed")
    done = await agent.wait_event("streamDone", lambda e: e["tag"] == "closed")
    assert (done["items"], done["error"]["code"]) == ([f"{srv.port}:0"], "connection_lost")
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the server stopped the producer of a requester that left
    assert calls == Counter({srv.port: 1})
    gate.set()
