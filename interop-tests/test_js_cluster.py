"""Node clients on a cluster joined through a real nats-server
(docs/cluster.md): requests, responders, publishes with wildcards, acks,
discovery and streams between Node and Python clients on different nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_protocol import HandlerError
from ipc_server import IPCServer
from tests.nats_support import NatsServer, nats, until  # noqa: F401 - the fixture

pytest.importorskip("nats")


@pytest.fixture
async def two_nodes(nats: NatsServer) -> AsyncIterator[tuple[IPCServer, IPCServer]]:  # noqa: F811
    a = IPCServer("127.0.0.1", 0, cluster=(nats.url,), node_name="a", shutdown_grace_s=0.5, no_responders_grace_s=0)
    b = IPCServer("127.0.0.1", 0, cluster=(nats.url,), node_name="b", shutdown_grace_s=0.5, no_responders_grace_s=0)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def test_requests_between_node_and_python_clients_on_different_nodes(
    two_nodes: tuple[IPCServer, IPCServer], node_agent: Callable[..., Any], py_client: Callable[..., Any]
) -> None:
    a, b = two_nodes
    js_on_a, js_on_b = await node_agent(a.port), await node_agent(b.port)
    py_on_a, py_on_b = await py_client(a.port), await py_client(b.port)

    await js_on_b.call("serve", channel="js.echo", kind="echo")  # resolves once NATS has the interest
    assert await py_on_a.request("js.echo", {"n": 1}) == {"n": 1}
    served = await js_on_b.wait_event("served")
    assert 0 < served["request"]["timeout_ms"] <= 30_000  # the deadline travelled

    await py_on_b.serve("py.add", lambda msg: msg.payload["a"] + msg.payload["b"])
    assert (await js_on_a.call("request", channel="py.add", payload={"a": 2, "b": 3}))["payload"] == 5

    await js_on_a.call("serve", channel="js.meta.*", kind="meta")
    meta = (await js_on_b.call("request", channel="js.meta.x", payload=None, timeoutMs=5000))["payload"]
    assert meta["channel"] == "js.meta.x" and meta["by"] == "node" and 0 < meta["timeout_ms"] <= 5000

    await js_on_a.call("serve", channel="js.throw", kind="throw", errorType="RangeError", message="out of range")
    error = await js_on_b.call_error("request", channel="js.throw")
    assert error["code"] == "handler_error" and error["remoteType"] == "RangeError"
    assert (await js_on_a.call_error("request", channel="nobody.here"))["code"] == "no_responders"


async def test_publishes_with_wildcards_and_acks_between_node_and_python(
    two_nodes: tuple[IPCServer, IPCServer], node_agent: Callable[..., Any], py_client: Callable[..., Any]
) -> None:
    a, b = two_nodes
    js_on_a, js_on_b = await node_agent(a.port), await node_agent(b.port)
    py_on_a, py_on_b = await py_client(a.port), await py_client(b.port)
    await js_on_b.call("subscribe", channel="orders.*")
    await js_on_b.call("subscribe", channel="orders.>")
    got_py: list[Any] = []
    await py_on_b.subscribe("*.created", lambda msg: got_py.append((msg.channel_id, msg.payload)))

    await py_on_a.publish("orders.created", {"from": "python"})
    assert await js_on_a.call("publish", channel="orders.created", payload={"from": "node"}, ack=True) == {"delivered": 0}  # nobody on a
    # then a marker from each publisher on the same channel: a duplicate would come before it (docs/cluster.md §3, ordering)
    await py_on_a.publish("orders.created", {"from": "python-marker"})
    await js_on_a.call("publish", channel="orders.created", payload={"from": "node-marker"})
    markers = {(s, m) for s in ("orders.*", "orders.>") for m in ("python-marker", "node-marker")}
    await until(lambda: markers <= {(e["sub"], e["payload"]["from"]) for e in js_on_b.events if e["event"] == "message"}, "both markers on b")
    await until(lambda: len(got_py) == 4, "the Python subscriber on b")
    assert sorted(p["from"] for _, p in got_py) == ["node", "node-marker", "python", "python-marker"]
    seen = sorted((e["sub"], e["payload"]["from"]) for e in js_on_b.events if e["event"] == "message")
    assert seen == sorted((s, f) for s in ("orders.*", "orders.>") for f in ("node", "node-marker", "python", "python-marker"))


async def test_discovery_from_a_node_client_covers_the_cluster(
    two_nodes: tuple[IPCServer, IPCServer], node_agent: Callable[..., Any]
) -> None:
    a, b = two_nodes
    await until(lambda: a.cluster.members.alive() == ["b"] and b.cluster.members.alive() == ["a"], "the nodes heard each other")
    js_on_a, js_on_b = await node_agent(a.port), await node_agent(b.port)
    await js_on_b.call("serve", channel="svc.b", kind="echo")
    services = await js_on_a.call("system", action="services")
    assert services["services"] == {"svc.b": 1} and services["nodes"] == {"a": {}, "b": {"svc.b": 1}}
    stats = await js_on_a.call("system", action="stats")
    assert stats["cluster"]["state"] == "up" and sorted(stats["cluster"]["nodes"]) == ["a", "b"]


async def test_streams_between_node_and_python_clients_on_different_nodes(
    two_nodes: tuple[IPCServer, IPCServer], node_agent: Callable[..., Any], py_client: Callable[..., Any]
) -> None:
    """docs/cluster.md §3, Streams: items in order with credit end to end, the end, errors, and cancels both ways."""
    a, b = two_nodes
    js_on_a, js_on_b = await node_agent(a.port), await node_agent(b.port)
    py_on_a, py_on_b = await py_client(a.port), await py_client(b.port)

    # a Node producer on b, a Python consumer on a
    await js_on_b.call("serveStream", channel="node.count", kind="count")
    await js_on_b.call("serveStream", channel="node.fail", kind="failAfter")
    await js_on_b.call("serveStream", channel="node.endless", kind="endless")
    assert [item async for item in py_on_a.stream("node.count", 700, window=8)] == list(range(700))
    got: list[Any] = []
    with pytest.raises(HandlerError) as failed:
        async for item in py_on_a.stream("node.fail", 3):
            got.append(item)
    assert got == [0, 1, 2] and (failed.value.remote_type, failed.value.message) == ("TypeError", "failed after 3")
    async for item in py_on_a.stream("node.endless", window=4):
        if item == 50:
            break
    closed = await js_on_b.wait_event("producerClosed")  # the Python consumer's cancel reached the Node producer
    assert closed["aborted"] and closed["pulled"] <= 51 + 4

    # a Python producer on b, a Node consumer on a
    ended = asyncio.Event()

    async def ticks(msg: Any) -> AsyncIterator[dict[str, int]]:
        try:
            for i in range(msg.payload if msg.payload is not None else 10**9):
                yield {"tick": i}
        finally:
            ended.set()

    await py_on_b.serve("py.ticks", ticks)
    streamed = await js_on_a.call("stream", channel="py.ticks", payload=500, window=16)
    assert (streamed["items"], streamed["error"]) == ([{"tick": i} for i in range(500)], None)
    await asyncio.wait_for(ended.wait(), 10)
    ended.clear()
    broke = await js_on_a.call("stream", channel="py.ticks", breakAfter=20, window=4)
    assert broke["items"] == [{"tick": i} for i in range(20)]
    await asyncio.wait_for(ended.wait(), 10)  # the Node consumer's cancel reached the Python generator
    await until(lambda: not a.cluster.relay and not b.cluster.incoming and b.stats.streams == 0, "the streams are gone on both nodes")
