"""Channels whose NATS subject is too long to cross nodes, and the link
starting over when nats-py gives its connection up (docs/cluster.md §2,
§5): a client's long non-ASCII channel (each character escapes to up to
twelve) must not cut its node off the cluster, and a node whose NATS
connection nats-py closed for good must come back by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer

from .nats_support import NatsServer, clients, nats, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0
LONG_SUBSCRIBED = "\U0001f600" * 512  # 512 characters, a legal channel; 6,000+ escaped
LONG_SERVED = "中" * 500


async def _echo(msg: Any) -> Any:
    return msg.payload


async def _cluster_state(client: IPCClient) -> dict[str, Any]:
    return (await client.system("stats"))["cluster"]  # type: ignore[no-any-return]


async def test_a_channel_too_long_for_nats_stays_on_its_node_and_the_node_stays_up(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    a, b = await nodes("a"), await nodes("b")
    on_a, also_on_a, on_b = await clients(a.port), await clients(a.port), await clients(b.port)
    await on_a.serve("echo.a", _echo)
    await on_b.serve("echo.b", _echo)
    long_got: list[Any] = []
    await asyncio.wait_for(on_a.subscribe(LONG_SUBSCRIBED, lambda msg: long_got.append(msg.payload)), WAIT_S)
    await asyncio.wait_for(on_a.serve(LONG_SERVED, _echo), WAIT_S)

    state = await _cluster_state(on_a)
    assert state["state"] == "up" and state["link_disconnects"] == 0
    assert state["patterns_kept_local"] == 2
    assert state["nats_subscriptions"] == {"publish": 0, "request": 1}  # echo.a only
    # ordinary channels cross nodes both ways
    assert await on_a.request("echo.b", 1, timeout=5) == 1
    assert await on_b.request("echo.a", 2, timeout=5) == 2
    got_a: list[Any] = []
    got_b: list[Any] = []
    await on_a.subscribe("news.a", lambda msg: got_a.append(msg.payload))
    await on_b.subscribe("news.b", lambda msg: got_b.append(msg.payload))
    await on_a.publish("news.b", "from a")
    await on_b.publish("news.a", "from b")
    await until(lambda: got_a == ["from b"] and got_b == ["from a"], "publishes both ways")
    # the long channels work on their own node
    await also_on_a.publish(LONG_SUBSCRIBED, "local")
    await until(lambda: long_got == ["local"], "the long channel's local publish")
    assert await also_on_a.request(LONG_SERVED, 3, timeout=5) == 3
    assert (await _cluster_state(on_a))["state"] == "up"


async def test_the_link_starts_over_when_nats_py_closes_its_connection(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    a, b = await nodes("a"), await nodes("b")
    b.add_handler("handler.b", lambda msg: msg.payload)
    await b.cluster.confirmed()
    on_a, on_b = await clients(a.port), await clients(b.port)
    await on_a.serve("echo.a", _echo)
    await on_b.serve("echo.b", _echo)
    got_a: list[Any] = []
    got_b: list[Any] = []
    await on_a.subscribe("news.a", lambda msg: got_a.append(msg.payload))
    await on_b.subscribe("news.b", lambda msg: got_b.append(msg.payload))
    await until(lambda: a.cluster.members.alive() == ["b"] and b.cluster.members.alive() == ["a"], "the nodes see each other")
    assert await on_a.request("echo.b", 0, timeout=5) == 0
    before = (await _cluster_state(on_b))["nats_subscriptions"]
    old_client = b.cluster.link.nc

    # nats-server closes b's connection on a control line past 4 KB, and
    # nats-py does not reconnect from that error: it closes the client.
    await old_client.publish("x" * 5000, b"")
    await until(lambda: old_client.is_closed, "nats-py closed b's client")
    await until(lambda: not b.cluster.link.up, "b degraded")
    late: list[Any] = []
    await asyncio.wait_for(on_b.subscribe("late", lambda msg: late.append(msg.payload)), WAIT_S)  # made meanwhile

    await until(lambda: b.cluster.link.up, "b back up by itself", timeout=15)
    assert b.cluster.link.nc is not old_client
    state = await _cluster_state(on_b)
    assert state["state"] == "up" and state["reason"] is None and state["link_disconnects"] == 1
    assert state["nats_subscriptions"] == {"publish": before["publish"] + 1, "request": before["request"]}
    await until(lambda: "b" in a.cluster.members.alive() and "a" in b.cluster.members.alive(), "heartbeats again")
    assert await on_a.request("echo.b", 1, timeout=5) == 1  # a responder of b
    assert await on_a.request("handler.b", 2, timeout=5) == 2  # an in-process handler of b
    assert await on_b.request("echo.a", 3, timeout=5) == 3  # answers reach b again
    await on_a.publish("news.b", "from a")
    await on_a.publish("late", "late")
    await on_b.publish("news.a", "from b")
    await until(lambda: got_b == ["from a"] and late == ["late"] and got_a == ["from b"], "publishes both ways")
    services = await on_a.system("services")
    assert services["missing"] == [] and services["nodes"]["b"]["echo.b"] == 1  # b answers cluster-wide queries
