"""Servers joined through a real nats-server (docs/cluster.md): requests,
responders, publishes with wildcards, acks, cancels and discovery across
two and three nodes, with Python clients on different nodes. Failures
(NATS gone, a node killed) are in test_cluster_failures.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, NoResponders, RemoteError, RequestTimeout, ResponderLost
from ipc_server import IPCServer

from .nats_support import NatsServer, nats, until  # noqa: F401 - the fixture

WAIT_S = 10.0

pytest.importorskip("nats")


class Cluster:
    """In-process nodes on one nats-server, and clients on them."""

    def __init__(self, nats_url: str) -> None:
        self.url = nats_url
        self.nodes: list[IPCServer] = []
        self.clients: list[IPCClient] = []

    async def node(self, name: str, **settings: Any) -> IPCServer:
        settings.setdefault("shutdown_grace_s", 0.5)
        settings.setdefault("no_responders_grace_s", 0)  # no_responders at once, unless a test says otherwise
        node = IPCServer("127.0.0.1", 0, cluster=(self.url,), node_name=name, **settings)
        await node.start()
        self.nodes.append(node)
        return node

    async def client(self, node: IPCServer, app_id: str = "app", **kwargs: Any) -> IPCClient:
        client = IPCClient(app_id, "127.0.0.1", node.port, **kwargs)
        self.clients.append(client)
        await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await asyncio.wait_for(client.disconnect(), WAIT_S)
        for node in self.nodes:
            await node.close()


@pytest.fixture
async def cluster(nats: NatsServer) -> AsyncIterator[Cluster]:  # noqa: F811
    c = Cluster(nats.url)
    yield c
    await c.close()


async def both_joined(*nodes: IPCServer) -> None:
    """Every node has heard every other's heartbeat (discovery waits on it)."""
    names = {n.cluster.name for n in nodes}
    await until(lambda: all(set(n.cluster.members.alive()) == names - {n.cluster.name} for n in nodes), "every node heard the others")


# -- requests ----------------------------------------------------------------------------


async def test_a_request_reaches_a_handler_and_a_responder_on_another_node(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")

    @b.handler("math.add")
    async def add(msg: Any) -> int:
        return int(msg.payload["x"]) + int(msg.payload["y"])

    await b.cluster.confirmed()  # a handler added while running: on NATS once this returns

    responder = await cluster.client(b)
    await responder.serve("greet.*", lambda msg: f"hello {msg.payload}")
    requester = await cluster.client(a)
    assert await requester.request("math.add", {"x": 2, "y": 3}) == 5
    assert await requester.request("greet.en", "ann") == "hello ann"
    reply = await requester.send_request("greet.fr", "bo")
    assert reply.payload == "hello bo" and reply.error is None


async def test_a_handler_error_crosses_nodes_with_its_type(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")

    @b.handler("fails")
    def fails(msg: Any) -> None:
        raise ValueError("nope")

    await b.cluster.confirmed()

    with pytest.raises(RemoteError) as info:
        await (await cluster.client(a)).request("fails")
    assert info.value.code == "handler_error" and info.value.remote_type == "ValueError"


async def test_no_responders_at_once_when_no_node_serves_the_channel(cluster: Cluster) -> None:
    a, _ = await cluster.node("a"), await cluster.node("b")
    requester = await cluster.client(a)
    with pytest.raises(NoResponders, match="on any node"):
        await requester.request("nobody.home", timeout=30)


async def test_the_local_node_serves_first_and_others_share_the_rest(cluster: Cluster) -> None:
    """Local first (as NATS prefers a queue subscriber on its own server);
    from a node without one, NATS's queue group spreads requests over the nodes that serve."""
    a, b, c = await cluster.node("a"), await cluster.node("b"), await cluster.node("c")
    for node in (b, c):
        node.add_handler("who", lambda msg, name=node.cluster.name: name)
        await node.cluster.confirmed()
    a_local = await cluster.client(b)
    assert {await a_local.request("who") for _ in range(5)} == {"b"}
    requester = await cluster.client(a)
    seen = [await requester.request("who") for _ in range(40)]
    assert set(seen) == {"b", "c"}


async def test_serve_is_in_effect_on_every_node_once_it_returns(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    requester, responder = await cluster.client(a), await cluster.client(b)
    for i in range(10):
        await responder.serve(f"fresh.{i}", lambda msg: msg.payload)
        assert await requester.request(f"fresh.{i}", i) == i  # no wait between: the ack came after NATS's


async def test_the_deadline_travels_and_times_out_once(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    started = asyncio.Event()

    @b.handler("slow")
    async def slow(msg: Any) -> str:
        started.set()
        await asyncio.sleep(30)
        return "late"

    await b.cluster.confirmed()

    requester = await cluster.client(a)
    with pytest.raises(RequestTimeout):
        await requester.request("slow", timeout=0.5)
    assert started.is_set()
    # The client's own timer may fire a moment before the node's deadline does.
    async with asyncio.timeout(WAIT_S):
        while a.cluster.outgoing.table:
            await asyncio.sleep(0.005)


async def test_responder_lost_when_the_remote_responder_disconnects(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    responder = await cluster.client(b)
    got = asyncio.Event()

    async def hold(msg: Any) -> None:
        got.set()
        await asyncio.sleep(30)

    await responder.serve("hold", hold)
    requester = await cluster.client(a)
    call = asyncio.ensure_future(requester.request("hold", timeout=30))
    await asyncio.wait_for(got.wait(), WAIT_S)
    await responder.disconnect()
    with pytest.raises(ResponderLost):
        await asyncio.wait_for(call, WAIT_S)


async def test_a_cancel_and_a_requester_leaving_stop_the_remote_handler(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    started: asyncio.Queue[int] = asyncio.Queue()
    cancelled: asyncio.Queue[int] = asyncio.Queue()

    @b.handler("long")
    async def long(msg: Any) -> None:
        started.put_nowait(msg.payload)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.put_nowait(msg.payload)
            raise

    await b.cluster.confirmed()

    requester = await cluster.client(a)
    call = asyncio.ensure_future(requester.request("long", 1, timeout=30))
    assert await asyncio.wait_for(started.get(), WAIT_S) == 1
    call.cancel()  # the client sends a cancel (§15.4)
    assert await asyncio.wait_for(cancelled.get(), WAIT_S) == 1

    leaving = await cluster.client(a)
    left = asyncio.ensure_future(leaving.request("long", 2, timeout=30))
    assert await asyncio.wait_for(started.get(), WAIT_S) == 2
    await leaving.disconnect()
    assert await asyncio.wait_for(cancelled.get(), WAIT_S) == 2
    with pytest.raises(ConnectionLost):
        await left
    await until(lambda: len(b.cluster.incoming) == 0 and not a.cluster.outgoing.table, "both sides forgot the requests")


async def test_an_idempotency_key_runs_once_across_nodes(cluster: Cluster) -> None:
    """The key's window lives on the requester's node (protocol.md §6.6 item 9)."""
    a, b = await cluster.node("a"), await cluster.node("b")
    runs: list[int] = []

    @b.handler("pay")
    async def pay(msg: Any) -> int:
        runs.append(msg.payload)
        return len(runs)

    await b.cluster.confirmed()

    requester = await cluster.client(a)
    first = await requester.request("pay", 7, idempotency_key="order-1")
    again = await requester.request("pay", 7, idempotency_key="order-1")
    assert first == again == 1 and runs == [7]


# -- publish / subscribe -------------------------------------------------------------------


async def test_a_publish_reaches_every_node_once_per_connection_with_wildcards(cluster: Cluster) -> None:
    a, b, c = await cluster.node("a"), await cluster.node("b"), await cluster.node("c")
    publisher = await cluster.client(a)
    inboxes: dict[str, list[Any]] = {}

    async def subscriber(node: IPCServer, name: str, *patterns: str) -> None:
        client = await cluster.client(node)
        got = inboxes.setdefault(name, [])
        for pattern in patterns:  # each handler gets the connection's one copy
            await client.subscribe(pattern, lambda msg, got=got, p=pattern: got.append((p, msg.payload)))

    await subscriber(a, "a-local", "orders.>")
    await subscriber(b, "b-two-patterns", "orders.*", "orders.>")
    await subscriber(b, "b-exact", "orders.created")
    await subscriber(c, "c-star", "*.created")
    await subscriber(c, "c-other", "invoices.*")
    delivered = await publisher.publish("orders.created", {"n": 1}, ack=True)
    await publisher.publish("orders.eu.created", {"n": 2})
    await until(lambda: len(inboxes["c-star"]) == 1 and len(inboxes["b-two-patterns"]) == 3 and len(inboxes["a-local"]) == 2, "every copy")
    assert delivered == 1  # the ack counts the publishing node's connections (docs/cluster.md §3)
    assert inboxes["b-two-patterns"].count(("orders.*", {"n": 1})) == 1
    assert inboxes["b-two-patterns"].count(("orders.>", {"n": 1})) == 1
    assert inboxes["b-exact"] == [("orders.created", {"n": 1})]
    assert inboxes["c-star"] == [("*.created", {"n": 1})]
    assert inboxes["c-other"] == []
    # the node received each publish once (NATS sends one copy per matching subscription: one kept)
    assert b.cluster.publishes_in == 2


async def test_subscribe_is_in_effect_on_every_node_once_it_returns(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    publisher, subscriber = await cluster.client(a), await cluster.client(b)
    got: list[int] = []
    for i in range(10):
        await subscriber.subscribe(f"news.{i}", lambda msg: got.append(msg.payload))
        await publisher.publish(f"news.{i}", i)  # no wait: the ack came after NATS confirmed the interest
    await until(lambda: len(got) == 10, "every publish")
    assert sorted(got) == list(range(10))


async def test_publishes_of_one_publisher_on_one_channel_arrive_in_order(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    publisher, subscriber = await cluster.client(a), await cluster.client(b)
    got: list[int] = []
    await subscriber.subscribe("seq.x", lambda msg: got.append(msg.payload))
    for i in range(200):
        await publisher.publish("seq.x", i)
    await until(lambda: len(got) == 200, "200 publishes")
    assert got == list(range(200))


async def test_apps_and_odd_tokens_stay_apart_on_nats(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    got: list[tuple[str, Any]] = []
    for app in ("app one", "app.two"):
        client = await cluster.client(b, app)
        await client.subscribe("a b.*", lambda msg, app=app: got.append((app, msg.channel_id)))
    await (await cluster.client(a, "app one")).publish("a b.c%d", 1)
    await (await cluster.client(a, "app.two")).publish("a b.é", 2)
    await until(lambda: len(got) == 2, "two publishes")
    assert sorted(got) == [("app one", "a b.c%d"), ("app.two", "a b.é")]


async def test_services_announcements_and_discovery_cover_the_cluster(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await both_joined(a, b)
    watcher = await cluster.client(a)
    events: list[dict[str, Any]] = []
    await watcher.subscribe("$sys.services", lambda msg: events.append(msg.payload))
    b.add_handler("calc.*", lambda msg: 0)
    responder = await cluster.client(b)
    await responder.serve("svc.one", lambda msg: 1)
    await responder.subscribe("topic.x", lambda msg: None)
    await until(lambda: any(e["channel"] == "svc.one" for e in events), "the remote registration announced")

    services = await watcher.system("services")
    assert services["services"] == {"svc.one": 1, "calc.*": 0}
    assert services["nodes"]["a"] == {} and services["nodes"]["b"] == {"svc.one": 1, "calc.*": 0} and "total" not in services
    own = await cluster.client(a)
    await own.serve("svc.a", lambda msg: 2)
    first = await watcher.system("services", params={"limit": 1})  # each node's page of its own table, as channels
    assert first["nodes"] == {"a": {"svc.a": 1}, "b": {"svc.one": 1}} and (first["total"], first["offset"], first["limit"]) == (2, 0, 1)
    second = await watcher.system("services", params={"offset": 1, "limit": 1})
    assert second["services"] == {"calc.*": 0} and second["nodes"]["a"] == {} and second["total"] == 2
    channels = await watcher.system("channels")
    assert channels["channels"] == {"$sys.services": 1, "topic.x": 1} and "total" not in channels  # fits a page: as before
    await responder.subscribe("topic.y", lambda msg: None)
    first = await watcher.system("channels", params={"limit": 1})  # each node's page: its table's first entry
    assert first["nodes"] == {"a": {"$sys.services": 1}, "b": {"topic.x": 1}} and (first["total"], first["offset"], first["limit"]) == (2, 0, 1)
    second = await watcher.system("channels", params={"offset": 1, "limit": 1})
    assert second["channels"] == {"topic.y": 1} and second["total"] == 2
    stats = await watcher.system("stats")
    assert stats["cluster"]["node"] == "a" and stats["cluster"]["state"] == "up"
    assert set(stats["cluster"]["nodes"]) == {"a", "b"} and stats["cluster"]["missing"] == []
    assert stats["cluster"]["total"]["connections"] == stats["cluster"]["nodes"]["a"]["connections"] + stats["cluster"]["nodes"]["b"]["connections"]


async def test_three_nodes_every_direction(cluster: Cluster) -> None:
    nodes = [await cluster.node(n) for n in ("a", "b", "c")]
    clients = [await cluster.client(n) for n in nodes]
    for i, client in enumerate(clients):
        await client.serve(f"n{i}.echo", lambda msg, i=i: [i, msg.payload])
    for i, client in enumerate(clients):
        for j in range(3):
            assert await client.request(f"n{j}.echo", i) == [j, i]


async def test_a_standalone_server_has_no_cluster(make_client: Callable[..., Any], server: IPCServer) -> None:
    assert server.cluster is None
    client = await make_client()
    with pytest.raises(NoResponders):
        await client.request("nobody")
    assert "cluster" not in await client.system("stats")


async def test_binary_payloads_cross_nodes(cluster: Cluster) -> None:
    """Binary frames (protocol.md §16) go through NATS as they are."""
    a, b = await cluster.node("a"), await cluster.node("b")

    @b.handler("blob.size")
    async def size(msg: Any) -> Any:
        return {"n": len(msg.payload["data"]), "head": msg.payload["data"][:2]}

    await b.cluster.confirmed()
    requester, responder = await cluster.client(a), await cluster.client(b)
    assert await requester.request("blob.size", {"data": bytes(range(256)) * 40}) == {"n": 10240, "head": b"\x00\x01"}
    await responder.serve("blob.echo", lambda msg: msg.payload)
    assert await requester.request("blob.echo", {"x": b"abc", "y": [b"", b"z"]}) == {"x": b"abc", "y": [b"", b"z"]}
    got: list[Any] = []
    await responder.subscribe("img.*", lambda msg: got.append(msg.payload))
    await requester.publish("img.new", {"jpeg": b"\xff\xd8\xff"})
    await until(lambda: got == [{"jpeg": b"\xff\xd8\xff"}], "the binary publish")


async def test_a_version_1_requester_and_subscriber_across_nodes(cluster: Cluster) -> None:
    """A legacy client's answer is re-encoded for it by its own node (protocol.md §10)."""
    from .conftest import RawPeer, frame

    a, b = await cluster.node("a"), await cluster.node("b")
    b.add_handler("v1.echo", lambda msg: {"echo": msg.payload})
    await b.cluster.confirmed()
    legacy = await RawPeer.open(a.port)
    try:
        await legacy.handshake(protocol=None)
        legacy.send(frame("subscribe", "v1.news", {"connection_id": "raw"}, message_id="s1"))
        legacy.send(frame("request", "v1.echo", 7, message_id="r1"))
        answer = await legacy.recv_until(lambda m: m.reply_to == "r1")
        assert answer.payload == {"echo": 7} and answer.headers is None
        publisher = await cluster.client(b)
        await until(lambda: a.cluster.interest.holds("p", "app", "v1.news"), "the legacy subscription on a")
        await a.cluster.confirmed()
        await publisher.publish("v1.news", "hello")
        news = await legacy.recv_until(lambda m: m.channel_id == "v1.news")
        assert news.payload == "hello"
    finally:
        await legacy.close()


async def test_within_the_grace_a_request_waits_for_a_responder_on_any_node(cluster: Cluster) -> None:
    """protocol.md §13.2 across nodes: after a node starts, a request no node
    serves yet is sent again until one does (or the grace ends)."""
    a = await cluster.node("a", no_responders_grace_s=5)
    b = await cluster.node("b")
    requester = await cluster.client(a)
    call = asyncio.ensure_future(requester.request("late.svc", 1, timeout=10))
    await until(lambda: a.cluster.outgoing.retried > 0, "the request sent again")
    responder = await cluster.client(b)
    await responder.serve("late.svc", lambda msg: msg.payload + 1)
    assert await asyncio.wait_for(call, 10) == 2
    before = a.cluster.outgoing.retried
    local = asyncio.ensure_future(requester.request("local.svc", 2, timeout=10))
    await until(lambda: a.cluster.outgoing.retried > before, "the second request sent again")
    neighbour = await cluster.client(a)  # on the requester's own node, which NATS never hands its own requests
    await neighbour.serve("local.svc", lambda msg: msg.payload + 10)
    assert await asyncio.wait_for(local, 10) == 12
    with pytest.raises(NoResponders, match="none came within"):
        await requester.request("never.svc", timeout=0.5)  # answered just before its deadline
