"""A cluster's members are nodes' incarnations, not their names
(docs/cluster.md §1, §3 Streams, §4), with a real nats-server and nodes in
their own processes: a consumer's node replaced by a new process under its
name (what ``--workers`` does with a worker that died) no longer keeps its
predecessor's stream running on the producing node; two nodes given one
name by mistake (twins) are both listed, and one's death stops the stream
it consumed; a heartbeat without ``id`` (a node from before it was sent)
still counts; ``stats`` names a member that goes silent while it is asked
one way in ``alive`` and ``missing``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer
from ipc_server.cluster.members import is_heard

from .conftest import counting_until_closed
from .nats_support import NatsServer, NodeProcess, clients, nats, node_process, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0
Nodes = Callable[..., Awaitable[IPCServer]]
Clients = Callable[..., Awaitable[IPCClient]]
Processes = Callable[..., Awaitable[NodeProcess]]


async def consume_three(client: IPCClient, channel: str) -> Any:
    """A stream of ``channel`` read for three items, then left unread (window 4: its producer waits)."""
    stream = client.stream(channel, window=4)
    assert [await stream.__anext__() for _ in range(3)] == [0, 1, 2]
    return stream


async def test_a_consumers_node_restarted_under_its_name_stops_the_producer(
    nats: NatsServer, nodes: Nodes, node_process: Processes, clients: Clients  # noqa: F811
) -> None:
    old = await node_process(nats.url, "--node-name", "a")
    b = await nodes("b")
    closed = asyncio.Event()
    b.add_handler("endless", counting_until_closed(closed))
    b.add_handler("ping", lambda msg: "pong")
    await b.cluster.confirmed()
    stream = await consume_three(await clients(old.port, reconnect=False), "endless")

    # Its replacement heard by b before the old one is silent (a worker
    # restarted at once): by name, "a" never stops being heard.
    new = await node_process(nats.url, "--node-name", "a")
    on_new = await clients(new.port, reconnect=False)
    assert await on_new.request("ping", None) == "pong"  # after its heartbeat, on the same NATS connection: b heard it
    await old.kill()
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the old incarnation silent for three heartbeats
    await until(lambda: b.stats.streams == 0 and not b.cluster.incoming, "the stream is gone on b")
    assert b.cluster.state()["streams_dropped"] == 1
    await until(lambda: b.cluster.members.alive() == ["a"], "b lists the new a only")
    assert await on_new.request("ping", None) == "pong"
    with contextlib.suppress(Exception):
        await stream.aclose()


async def test_twins_both_answer_services_channels_and_stats(nodes: Nodes, node_process: Processes, nats: NatsServer, clients: Clients) -> None:  # noqa: F811
    twin = await node_process(nats.url, "--node-name", "dup")
    other, x = await nodes("dup"), await nodes("x")
    await until(lambda: len(x.cluster.members.alive()) == 2, "x hears both twins")
    on_twin, on_other, on_x = await clients(twin.port), await clients(other.port), await clients(x.port)
    twin_id = (await on_twin.system("stats"))["cluster"]["node_id"]
    other_id = other.cluster.state()["node_id"]
    assert twin_id != other_id and twin_id.startswith("dup~") and other_id.startswith("dup~")
    await on_twin.serve("svc.twin", lambda msg: 1)
    await on_twin.subscribe("news", lambda msg: None)
    await on_other.serve("svc.other", lambda msg: 2)
    await on_other.serve("svc.both", lambda msg: 2)
    await on_twin.serve("svc.both", lambda msg: 1)
    await on_x.subscribe("news", lambda msg: None)

    for asking in (on_x, on_other):  # a third node, and a twin itself
        services = await asking.system("services")
        assert services["services"] == {"svc.twin": 1, "svc.other": 1, "svc.both": 2} and services["missing"] == []
        assert services["nodes"] == {"x": {}, twin_id: {"svc.twin": 1, "svc.both": 1}, other_id: {"svc.other": 1, "svc.both": 1}}
        channels = await asking.system("channels")
        assert channels["channels"] == {"news": 2} and set(channels["nodes"]) == {"x", twin_id, other_id}
        stats = await asking.system("stats")
        assert set(stats["cluster"]["nodes"]) == {"x", twin_id, other_id} and stats["cluster"]["missing"] == []
    assert (await on_x.system("stats"))["cluster"]["alive"] == sorted([twin_id, other_id])
    assert (await on_other.system("stats"))["cluster"]["alive"] == sorted([twin_id, "x"])


async def test_one_twin_dying_stops_the_stream_it_consumed(
    nats: NatsServer, nodes: Nodes, node_process: Processes, clients: Clients  # noqa: F811
) -> None:
    twin = await node_process(nats.url, "--node-name", "dup")
    other, x = await nodes("dup"), await nodes("x")
    await until(lambda: len(x.cluster.members.alive()) == 2, "x hears both twins")
    random_part = other.cluster.members.node_id.rpartition("~")[2]
    assert f"dup~{random_part}" in x.cluster.members.alive()
    assert other.cluster.members.alive() == sorted(["x", *[n for n in x.cluster.members.alive() if n != f"dup~{random_part}"]])

    closed = asyncio.Event()
    x.add_handler("endless", counting_until_closed(closed))
    await x.cluster.confirmed()
    stream = await consume_three(await clients(twin.port, reconnect=False), "endless")
    await twin.kill()  # its twin goes on beating under the same name
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: x.stats.streams == 0 and not x.cluster.incoming, "the stream is gone on x")
    await until(lambda: x.cluster.members.alive() == ["dup"], "x lists the twin left")
    with contextlib.suppress(Exception):
        await stream.aclose()


@contextlib.asynccontextmanager
async def old_style_node(nats: NatsServer, name: str) -> AsyncIterator[Any]:
    """A raw NATS connection beating and answering ``services`` as a node
    from before heartbeats and answers carried ``id``."""
    import nats as nats_py

    nc = await nats_py.connect(nats.url)

    async def answer(msg: Any) -> None:
        await nc.publish(msg.reply, json.dumps({"node": name, "result": {"services": {"legacy.svc": 1}}}).encode())

    await nc.subscribe("ipcb._sys", cb=answer)

    async def beat() -> None:
        while True:
            await nc.publish("ipcb._hb", json.dumps({"node": name}).encode())
            await asyncio.sleep(0.5)

    task = asyncio.ensure_future(beat())
    try:
        yield nc
    finally:
        task.cancel()
        await nc.close()


async def test_a_heartbeat_without_id_still_counts_for_any_incarnation_of_its_name(nats: NatsServer, nodes: Nodes) -> None:  # noqa: F811
    a = await nodes("a")
    async with old_style_node(nats, "old"):
        await until(lambda: a.cluster.members.alive() == ["old"], "a hears the old-style node")
        live = a.cluster.members.live()
        assert list(live.values()) == ["old"]
        assert is_heard("old~0123abcd", live) and not is_heard("older~0123abcd", live)


async def test_an_answer_without_id_still_counts_for_its_name(nats: NatsServer, nodes: Nodes, clients: Clients) -> None:  # noqa: F811
    a = await nodes("a")
    client = await clients(a.port)
    async with old_style_node(nats, "old"):
        await until(lambda: a.cluster.members.alive() == ["old"], "a hears the old-style node")
        services = await client.system("services")
    assert services == {"services": {"legacy.svc": 1}, "nodes": {"a": {}, "old": {"legacy.svc": 1}}, "missing": []}


@contextlib.asynccontextmanager
async def raw_member(nats: NatsServer, name: str, member: str, *, answers: bool) -> AsyncIterator[asyncio.Task[None]]:
    """A raw NATS connection beating as member ``member`` of name ``name``
    (every 50 ms), answering cluster-wide queries or not; yields the beating
    task, which the test may cancel to make it go silent."""
    import nats as nats_py

    nc = await nats_py.connect(nats.url)
    if answers:

        async def answer(msg: Any) -> None:
            await nc.publish(msg.reply, json.dumps({"node": name, "id": member, "result": {"requests": 0}}).encode())

        await nc.subscribe("ipcb._sys", cb=answer)

    async def beat() -> None:
        while True:
            await nc.publish("ipcb._hb", json.dumps({"node": name, "id": member}).encode())
            await asyncio.sleep(0.05)

    task = asyncio.ensure_future(beat())
    try:
        yield task
    finally:
        task.cancel()
        await nc.close()


async def test_stats_names_a_member_gone_silent_during_its_wait_alike_in_alive_and_missing(nats: NatsServer, nodes: Nodes, clients: Clients) -> None:  # noqa: F811
    """``alive`` is the members asked, labelled as in ``nodes`` and ``missing``:
    one that falls silent while the query waits for it (a node killed and
    started again under its name) is not dropped from ``alive`` alone, nor
    its twin renamed there (docs/cluster.md §1, §4)."""
    a = await nodes("a", cluster_heartbeat_s=0.2)  # silent after 0.6 s, within the 1 s a query waits
    client = await clients(a.port)
    async with raw_member(nats, "b", "b~11111111", answers=True), raw_member(nats, "b", "b~22222222", answers=False) as dead:
        await until(lambda: a.cluster.members.alive() == ["b~11111111", "b~22222222"], "a hears both incarnations of b")
        dead.cancel()  # heard a moment ago: live when asked, silent long before the wait ends
        stats = (await client.system("stats"))["cluster"]
        assert a.cluster.members.alive() == ["b"]  # dropped meanwhile
    assert stats["missing"] == ["b~22222222"] and set(stats["nodes"]) == {"a", "b~11111111"}
    assert stats["alive"] == ["b~11111111", "b~22222222"]
