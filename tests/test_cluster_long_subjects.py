"""Channels whose NATS subject is too long to cross nodes (docs/cluster.md
§2): a client's long non-ASCII channel (each character escapes to up to
twelve) must not cut its node off the cluster."""

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

