"""A cluster's failures with real processes (docs/cluster.md §5): nats-server
stopped and started again (nodes serve local traffic, report degraded,
rejoin with their interest), a node SIGKILLed under load (its requests
in flight settle ``responder_lost`` long before their own deadline; the
load-balanced clients go on through the other nodes), and a requester's
node SIGKILLed (the handler running its request on another node is
stopped, long before the request's own deadline)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient, LoadBalancedClient
from ipc_protocol import NoResponders, ResponderLost
from ipc_server import IPCServer

from .http_probe import get
from .nats_support import NatsServer, NodeProcess, clients, nats, node_process, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0


async def test_nats_gone_local_traffic_goes_on_degraded_then_the_nodes_rejoin(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    a = await nodes("a", metrics_port=0)
    b = await nodes("b")
    a.add_handler("local.echo", lambda msg: msg.payload)
    hold = asyncio.Event()

    @b.handler("remote.echo")
    async def remote(msg: Any) -> Any:
        if msg.payload == "hold":
            await hold.wait()
        return msg.payload

    await b.cluster.confirmed()
    on_a, on_b = await clients(a.port), await clients(b.port)
    got_b: list[Any] = []
    await on_b.subscribe("news.*", lambda msg: got_b.append(msg.payload))
    got_a: list[Any] = []
    await on_a.subscribe("news.*", lambda msg: got_a.append(msg.payload))
    assert await on_a.request("remote.echo", 1) == 1
    in_flight = asyncio.ensure_future(on_a.request("remote.echo", "hold", timeout=30))
    await until(lambda: len(b.cluster.incoming) == 1, "the request held on b")

    await nats.stop()
    with pytest.raises(ResponderLost, match="lost its connection to the cluster"):
        await asyncio.wait_for(in_flight, WAIT_S)  # at once, not at its deadline
    hold.set()
    await until(lambda: not a.cluster.link.up and not b.cluster.link.up, "both nodes see NATS gone")

    # local traffic goes on
    assert await on_a.request("local.echo", 2) == 2
    await on_a.publish("news.local", "a only")
    await until(lambda: got_a == ["a only"], "the local subscriber")
    with pytest.raises(NoResponders, match="cut off from the cluster"):
        await on_a.request("remote.echo", 3)
    stats = await on_a.system("stats")
    assert stats["cluster"]["state"] == "degraded" and "NATS" in stats["cluster"]["reason"]
    health = await get(a.metrics.port, "/healthz")  # type: ignore[union-attr]
    assert health.status == 503 and any(r.startswith("cluster:") for r in json.loads(health.body)["reasons"])
    # a subscription made while NATS is away is sent when it is back
    late: list[Any] = []
    await on_b.subscribe("late.topic", lambda msg: late.append(msg.payload))

    await nats.start()  # the same port
    await until(lambda: a.cluster.link.up and b.cluster.link.up, "both nodes rejoin", timeout=15)
    assert await on_a.request("remote.echo", 4) == 4  # b's handler, through NATS again
    await on_a.publish("news.again", "both")
    await on_a.publish("late.topic", "late")
    await until(lambda: got_b == ["both"] and late == ["late"], "interest from before and during the outage")
    stats = await on_a.system("stats")
    assert stats["cluster"]["state"] == "up" and stats["cluster"]["link_disconnects"] == 1
    assert (await get(a.metrics.port, "/healthz")).status == 200  # type: ignore[union-attr]


async def test_a_node_that_starts_without_nats_serves_degraded_and_joins_later(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    await nats.stop()
    a = await nodes("a")  # start() waits a little for NATS, then serves anyway
    a.add_handler("local.echo", lambda msg: msg.payload)
    on_a = await clients(a.port)
    assert await on_a.request("local.echo", 1) == 1
    assert (await on_a.system("stats"))["cluster"]["state"] == "degraded"
    await nats.start()
    b = await nodes("b")
    b.add_handler("remote.echo", lambda msg: msg.payload)
    await b.cluster.confirmed()
    await until(lambda: a.cluster.link.up, "a joins", timeout=15)
    assert await on_a.request("remote.echo", 2) == 2


async def test_a_node_killed_mid_load_settles_its_requests_and_clients_go_on(
    nats: NatsServer,  # noqa: F811
    nodes: Callable[..., Awaitable[IPCServer]],
    node_process: Callable[..., Awaitable[NodeProcess]],  # noqa: F811
    clients: Callable[..., Awaitable[IPCClient]],
) -> None:
    a = await nodes("a")
    c = await nodes("c")
    b = await node_process(nats.url, "--node-name", "b")
    release = asyncio.Event()
    started: list[int] = []

    async def work(msg: Any) -> Any:
        started.append(msg.payload)
        await release.wait()
        return msg.payload

    # a responder on b and c (the load-balanced client registers on every server)
    responder = LoadBalancedClient("app", [("127.0.0.1", b.port), ("127.0.0.1", c.port)], health_check_interval=0.2)
    await responder.start()
    mover = LoadBalancedClient("app", [("127.0.0.1", b.port), ("127.0.0.1", a.port)], health_check_interval=0.2)
    await mover.start()
    try:
        assert await responder.serve("work", work) == 2
        requester = await clients(a.port)
        loop = asyncio.get_running_loop()
        calls = [asyncio.ensure_future(requester.request("work", i, timeout=30)) for i in range(20)]
        await until(lambda: len(started) == 20, "20 requests at the responders on b and c")
        killed_at = loop.time()
        await b.kill()
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT_S)
        settled_in = loop.time() - killed_at
        lost = [r for r in results if isinstance(r, ResponderLost)]
        answered = [r for r in results if isinstance(r, int)]
        assert len(lost) + len(answered) == 20, results  # nothing else: no timeout, no connection_lost
        assert lost and answered  # NATS's queue group gave both nodes some (2^-19 that it did not)
        assert settled_in < 10  # a heartbeat's silence (1.5 s), not the requests' own 30 s
        # the load-balanced clients go on through the nodes that are left
        assert await mover.request("work", 100, timeout=10) == 100
        assert await requester.request("work", 101, timeout=10) == 101
        await until(lambda: "b" not in a.cluster.members.alive(), "b is gone from a's members")
    finally:
        await responder.close()
        await mover.close()


async def test_a_requesters_node_killed_stops_the_handler_running_its_request_on_another_node(
    nats: NatsServer,  # noqa: F811
    nodes: Callable[..., Awaitable[IPCServer]],
    node_process: Callable[..., Awaitable[NodeProcess]],  # noqa: F811
    clients: Callable[..., Awaitable[IPCClient]],
) -> None:
    a = await node_process(nats.url, "--node-name", "a")
    b = await nodes("b")
    started, stopped = asyncio.Event(), asyncio.Event()

    @b.handler("long")
    async def long(msg: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    await b.cluster.confirmed()
    requester = await clients(a.port, reconnect=False)
    call = asyncio.ensure_future(requester.request("long", None, timeout=60))
    await asyncio.wait_for(started.wait(), WAIT_S)
    await a.kill()  # nobody will read its answer, nor cancel it: b notices a's silence
    await asyncio.wait_for(stopped.wait(), WAIT_S)  # three heartbeats, not the request's own 60 s
    await until(lambda: not b.cluster.incoming, "the request is gone on b")
    assert b.cluster.state()["requests_dropped"] == 1
    await asyncio.gather(call, return_exceptions=True)
