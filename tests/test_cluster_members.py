"""A cluster's members are nodes' incarnations, not their names
(docs/cluster.md §1, §3 Streams, §4), with a real nats-server and nodes in
their own processes: a consumer's node replaced by a new process under its
name (what ``--workers`` does with a worker that died) no longer keeps its
predecessor's stream running on the producing node; two nodes given one
name by mistake (twins) are both listed, and one's death stops the stream
it consumed; a heartbeat without ``id`` (a node from before it was sent)
still counts."""

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


async def test_twins_are_both_listed_and_one_dying_stops_the_stream_it_consumed(
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
    """A raw NATS connection beating as a node from before heartbeats carried ``id``."""
    import nats as nats_py

    nc = await nats_py.connect(nats.url)

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
