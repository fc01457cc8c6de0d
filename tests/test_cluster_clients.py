"""The load-balanced client over nodes of one cluster (docs/cluster.md §6,
protocol.md §3 item 10), with a real nats-server: a node names its cluster
in the connect reply; a subscription lives on one node, so each publish
reaches it once, and moves when that node dies or goes lame duck. Over
standalone servers it stays on every one (test_load_balanced.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient, LoadBalancedClient
from ipc_protocol import Message, MessageType
from ipc_protocol.client_protocol import ClientProtocol
from ipc_protocol.cluster_info import ASKED_FEATURES, CLUSTER
from ipc_protocol.server_protocol import ServerProtocol
from ipc_server import IPCServer

from .nats_support import NatsServer, NodeProcess, clients, nats, node_process, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0


class Received:
    """What a subscriber got, and a wait for a marker publish: publishes of
    one connection on one channel arrive in order (docs/cluster.md §3)."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []

    def __call__(self, msg: Message) -> None:
        self.payloads.append(msg.payload)

    async def through(self, marker: str) -> None:
        await until(lambda: marker in self.payloads, f"the marker {marker!r}")


def handshake(cluster: str | None, features: tuple[str, ...] | None) -> dict[str, Any]:
    client = ClientProtocol("app", "c", client="t", features=features)
    client.connect()
    server = ServerProtocol(cluster=cluster)
    frames = server.receive_data(b"".join(client.data_to_send()))
    server.receive_frame(frames[0])
    server.accept("c")
    client.receive_frame(client.receive_data(b"".join(server.data_to_send()))[0])
    return client.server_info


def test_the_connect_reply_names_the_cluster_only_on_a_node_and_only_when_asked() -> None:
    node = handshake("east", ASKED_FEATURES)
    assert node[CLUSTER] == "east" and CLUSTER in node["features"]
    standalone = handshake(None, ASKED_FEATURES)
    assert CLUSTER not in standalone and CLUSTER not in standalone["features"]
    assert standalone == {**standalone, "features": ["cancel", "streams", "binary", "lame_duck", "goaway"]}
    assert CLUSTER not in handshake("east", None) and "features" not in handshake("east", None)  # §3 byte for byte


async def test_clients_learn_the_cluster_of_a_node_and_none_of_a_standalone_server(
    nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]
) -> None:
    a = await nodes("a", cluster_name="east")
    on_a = await clients(a.port)
    assert on_a.server_info[CLUSTER] == "east"
    async with IPCServer("127.0.0.1", 0) as standalone:
        plain = IPCClient("app", "127.0.0.1", standalone.port)
        await plain.connect()
        try:
            assert CLUSTER not in plain.server_info
        finally:
            await plain.disconnect()


async def delivered(client: IPCClient, channel: str, payload: Any) -> int:
    """The publisher's node's count (docs/cluster.md §3: acks count that node)."""
    count = await client.publish(channel, payload, ack=True)
    assert count is not None
    return count


async def test_a_subscription_over_two_nodes_lives_on_one_and_receives_each_publish_once(
    nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]
) -> None:
    a, b = await nodes("a"), await nodes("b")
    on_a, on_b = await clients(a.port), await clients(b.port)
    lb = LoadBalancedClient("app", [("127.0.0.1", a.port), ("127.0.0.1", b.port)], health_check_interval=None)
    async with lb:
        got = Received()
        assert await lb.subscribe("news", got) == 1
        # the first healthy server of the list holds it: a's publishes count it, b's do not
        assert await delivered(on_a, "news", "from a") == 1
        assert await delivered(on_b, "news", "from b") == 0
        await on_a.publish("news", "end a")
        await on_b.publish("news", "end b")
        await got.through("end a")
        await got.through("end b")
        assert sorted(got.payloads) == ["end a", "end b", "from a", "from b"]
        await lb.unsubscribe("news", got)
        assert await delivered(on_a, "news", "after") == 0 and await delivered(on_b, "news", "after") == 0


async def test_the_subscription_moves_when_its_node_is_killed(
    nats: NatsServer,  # noqa: F811
    nodes: Callable[..., Awaitable[IPCServer]],
    node_process: Callable[..., Awaitable[NodeProcess]],  # noqa: F811
    clients: Callable[..., Awaitable[IPCClient]],
) -> None:
    b = await node_process(nats.url, "--node-name", "b")
    a = await nodes("a")
    on_a = await clients(a.port)
    on_b = await clients(b.port, reconnect=False)
    lb = LoadBalancedClient("app", [("127.0.0.1", b.port), ("127.0.0.1", a.port)], health_check_interval=None)
    moved = asyncio.Event()
    moves: list[tuple[str, int, int]] = []

    def on_moved(channel: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        moves.append((channel, old["port"], new["port"]))
        moved.set()

    lb.on("subscription_moved", on_moved)
    async with lb:
        got = Received()
        assert await lb.subscribe("jobs.*", got) == 1
        await until(lambda: a.cluster.members.alive(), "a hears b")
        assert await delivered(on_b, "jobs.1", "before, from b") == 1  # held on b, the first of the list
        assert await delivered(on_a, "jobs.1", "before, from a") == 0
        await on_b.publish("jobs.1", "end b")
        await on_a.publish("jobs.1", "end a")
        await got.through("end b")
        await got.through("end a")
        await b.kill()
        await asyncio.wait_for(moved.wait(), WAIT_S)
        assert moves == [("jobs.*", b.port, a.port)]
        assert await delivered(on_a, "jobs.2", "after") == 1  # on a now, once
        await on_a.publish("jobs.2", "end after")
        await got.through("end after")
        assert sorted(got.payloads) == sorted(["before, from b", "before, from a", "end b", "end a", "after", "end after"])


async def test_the_subscription_moves_before_its_node_leaves_lame_duck(
    nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]
) -> None:
    a, b = await nodes("a", lame_duck_duration_s=30), await nodes("b")
    on_a, on_b = await clients(a.port, reconnect=False), await clients(b.port)
    lb = LoadBalancedClient("app", [("127.0.0.1", a.port), ("127.0.0.1", b.port)], health_check_interval=None)
    moved = asyncio.Event()
    lb.on("subscription_moved", lambda *args: moved.set())
    async with lb:
        got = Received()
        assert await lb.subscribe("news", got) == 1
        assert await delivered(on_a, "news", "before") == 1
        leaving = asyncio.ensure_future(a.lame_duck())
        try:
            await asyncio.wait_for(moved.wait(), WAIT_S)
            # a still serves its clients while it leaves; the subscription is on b alone now
            assert await delivered(on_a, "news", "from a") == 0
            assert await delivered(on_b, "news", "from b") == 1
            await on_a.publish("news", "end a")
            await on_b.publish("news", "end b")
            await got.through("end a")
            await got.through("end b")
            assert sorted(got.payloads) == ["before", "end a", "end b", "from a", "from b"]
        finally:
            await on_a.disconnect()
            await lb.close()  # the last client of a: its lame duck ends
            await asyncio.wait_for(leaving, WAIT_S)


async def test_a_responder_stays_on_every_node(
    nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]
) -> None:
    a, b = await nodes("a"), await nodes("b")
    lb = LoadBalancedClient("app", [("127.0.0.1", a.port), ("127.0.0.1", b.port)], health_check_interval=None)
    async with lb:
        assert await lb.serve("echo", lambda msg: msg.payload) == 2
        on_a, on_b = await clients(a.port), await clients(b.port)
        assert await on_a.request("echo", 1) == 1 and await on_b.request("echo", 2) == 2


async def test_different_clusters_and_a_standalone_server_each_keep_the_subscription(
    nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]
) -> None:
    east1, east2, west = await nodes("e1", cluster_name="east"), await nodes("e2", cluster_name="east"), await nodes("w", cluster_name="west")
    async with IPCServer("127.0.0.1", 0) as standalone:
        servers = [east1, east2, west, standalone]
        publishers = [await clients(s.port) for s in servers]
        lb = LoadBalancedClient("app", [("127.0.0.1", s.port) for s in servers], health_check_interval=None)
        async with lb:
            got = Received()
            assert await lb.subscribe("news", got) == 3  # one node of east, west, the standalone server
            assert [await delivered(p, "news", i) for i, p in enumerate(publishers)] == [1, 0, 1, 1]
            for i, p in enumerate(publishers):
                await p.publish("news", f"end {i}")
            for i in range(len(publishers)):
                await got.through(f"end {i}")
            assert sorted(map(str, got.payloads)) == ["0", "1", "2", "3", "end 0", "end 1", "end 2", "end 3"]
        for p in publishers:
            await p.disconnect()


def test_after_a_move_a_message_both_nodes_deliver_reaches_the_handler_once() -> None:
    from ipc_client.balanced_subscriptions import _Subscription

    got: list[Any] = []
    sub = _Subscription("news", lambda msg: got.append(msg.payload))
    first = Message.build(MessageType.PUBLISH, "app", "news", 1)
    sub.deliver(first)
    sub.deliver(first)  # before a move nothing is filtered: one server never delivers an id twice
    sub.moved = True
    second, third = Message.build(MessageType.PUBLISH, "app", "news", 2), Message.build(MessageType.PUBLISH, "app", "news", 3)
    for msg in (second, second, third):
        sub.deliver(msg)
    assert got == [1, 1, 2, 3]
