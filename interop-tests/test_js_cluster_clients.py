"""The Node LoadBalancedClient over nodes of one cluster (docs/cluster.md §6),
with a real nats-server: a subscription lives on one node, so each publish
reaches it once, and moves when that node is killed or goes lame duck;
responders stay on every node. The Python twin is tests/test_cluster_clients.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_server import IPCServer
from test_js_pool import pool_agent  # noqa: F401 (a fixture)
from tests.nats_support import NatsServer, NodeProcess, nats, node_process, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0


async def balanced(pool_agent: Callable[..., Any], *ports: int) -> Any:  # noqa: F811
    agent = await pool_agent("balanced", servers=[f"127.0.0.1:{p}" for p in ports], healthCheckInterval=60_000)
    await agent.call("start")
    return agent


def received(agent: Any) -> list[Any]:
    return [e["payload"] for e in agent.events if e["event"] == "message"]


async def through(agent: Any, marker: str) -> None:
    """Publishes of one connection on one channel arrive in order (docs/cluster.md §3): the marker comes last."""
    await until(lambda: marker in received(agent), f"the marker {marker!r}")


async def test_a_node_subscription_over_two_nodes_lives_on_one_and_receives_each_publish_once(
    nodes: Callable[..., Awaitable[IPCServer]], pool_agent: Callable[..., Any], py_client: Callable[..., Any]  # noqa: F811
) -> None:
    a, b = await nodes("a"), await nodes("b")
    py_on_a, py_on_b = await py_client(a.port), await py_client(b.port)
    agent = await balanced(pool_agent, a.port, b.port)
    await agent.call("subscribe", channel="news")
    # the first healthy server of the list holds it: a's acks count it, b's do not (acks count the publisher's node)
    assert await py_on_a.publish("news", "from a", ack=True) == 1
    assert await py_on_b.publish("news", "from b", ack=True) == 0
    await py_on_a.publish("news", "end a")
    await py_on_b.publish("news", "end b")
    await through(agent, "end a")
    await through(agent, "end b")
    assert sorted(received(agent)) == ["end a", "end b", "from a", "from b"]


async def test_a_node_subscription_moves_when_its_node_is_killed(
    nats: NatsServer,  # noqa: F811
    nodes: Callable[..., Awaitable[IPCServer]],
    node_process: Callable[..., Awaitable[NodeProcess]],  # noqa: F811
    pool_agent: Callable[..., Any],  # noqa: F811
    py_client: Callable[..., Any],
) -> None:
    b = await node_process(nats.url, "--node-name", "b")
    a = await nodes("a")
    py_on_a, py_on_b = await py_client(a.port), await py_client(b.port, reconnect=False)
    agent = await balanced(pool_agent, b.port, a.port)
    await agent.call("subscribe", channel="jobs.*")
    assert await py_on_b.publish("jobs.1", "before, from b", ack=True) == 1  # held on b, the first of the list
    assert await py_on_a.publish("jobs.1", "before, from a", ack=True) == 0
    await py_on_b.publish("jobs.1", "end b")
    await py_on_a.publish("jobs.1", "end a")
    await through(agent, "end b")
    await through(agent, "end a")
    await b.kill()
    moved = await agent.wait_event("subscription_moved")
    assert (moved["channel"], moved["from"], moved["to"]) == ("jobs.*", b.port, a.port)
    assert await py_on_a.publish("jobs.2", "after", ack=True) == 1  # on a now, once
    await py_on_a.publish("jobs.2", "end after")
    await through(agent, "end after")
    assert sorted(received(agent)) == sorted(["before, from b", "before, from a", "end b", "end a", "after", "end after"])


async def test_a_node_subscription_moves_before_its_node_leaves_lame_duck(
    nodes: Callable[..., Awaitable[IPCServer]], pool_agent: Callable[..., Any], py_client: Callable[..., Any]  # noqa: F811
) -> None:
    a, b = await nodes("a", lame_duck_duration_s=30), await nodes("b")
    py_on_a, py_on_b = await py_client(a.port, reconnect=False), await py_client(b.port)
    agent = await balanced(pool_agent, a.port, b.port)
    await agent.call("subscribe", channel="news")
    assert await py_on_a.publish("news", "before", ack=True) == 1
    leaving = asyncio.ensure_future(a.lame_duck())
    try:
        await agent.wait_event("subscription_moved", lambda e: e["from"] == a.port and e["to"] == b.port)
        # a still serves its clients while it leaves; the subscription is on b alone now
        assert await py_on_a.publish("news", "from a", ack=True) == 0
        assert await py_on_b.publish("news", "from b", ack=True) == 1
        await py_on_a.publish("news", "end a")
        await py_on_b.publish("news", "end b")
        await through(agent, "end a")
        await through(agent, "end b")
        assert sorted(received(agent)) == ["before", "end a", "end b", "from a", "from b"]
    finally:
        await py_on_a.disconnect()
        await agent.call("close")  # the last client of a: its lame duck ends
        await asyncio.wait_for(leaving, WAIT_S)


async def test_a_node_responder_stays_on_every_node(
    nodes: Callable[..., Awaitable[IPCServer]], pool_agent: Callable[..., Any], py_client: Callable[..., Any]  # noqa: F811
) -> None:
    a, b = await nodes("a"), await nodes("b")
    agent = await balanced(pool_agent, a.port, b.port)
    await agent.call("serve", channel="echo")
    py_on_a, py_on_b = await py_client(a.port), await py_client(b.port)
    assert await py_on_a.request("echo", 1) == {"by": "node", "payload": 1}
    assert await py_on_b.request("echo", 2) == {"by": "node", "payload": 2}
