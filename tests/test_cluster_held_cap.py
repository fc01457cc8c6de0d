"""``max_held_requests_per_connection`` across nodes (docs/protocol.md §12,
docs/cluster.md §3) with a real nats-server: a node whose responders of a
channel all hold their maximum hands the request on to another node,
once, and NATS (``no_echo``) never gives it back to the full node. So a
request is answered ``limit_exceeded`` only when no node that serves the
channel has room: not when NATS's queue group happened to pick a full
node while another one had an idle responder."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, LimitExceeded, Message
from ipc_server import IPCServer

from .nats_support import NatsServer, clients, nats, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0
TRIES = 30  # NATS picks a node at random: this many tries reach the full one at least once but for 2**-30
Nodes = Callable[..., Awaitable[IPCServer]]
Clients = Callable[..., Awaitable[IPCClient]]


class Full:
    """A responder on a node whose cap is 1, serving ``channels``, held
    full by one request from that node until :meth:`release`."""

    def __init__(self) -> None:
        self.held = asyncio.Event()
        self.released = asyncio.Event()
        self.filler: asyncio.Future[Any] | None = None

    async def stuck(self, msg: Message) -> str:
        self.held.set()
        await self.released.wait()
        return "late"

    @classmethod
    async def on(cls, clients: Clients, node: IPCServer, *channels: str) -> Full:
        full = cls()
        responder = await clients(node.port)
        for channel in channels:
            await responder.serve(channel, full.stuck)
        full.filler = asyncio.ensure_future((await clients(node.port)).request(channels[0], None, timeout=30))
        await asyncio.wait_for(full.held.wait(), WAIT_S)
        return full

    async def release(self) -> None:
        self.released.set()
        assert await asyncio.wait_for(self.filler, WAIT_S) == "late"  # type: ignore[arg-type]


def handed(node: IPCServer) -> int:
    return int(node.cluster.state()["requests_handed_on"])


async def test_a_request_that_meets_a_full_node_is_answered_by_another_nodes_idle_responder(nodes: Nodes, clients: Clients) -> None:
    a, b, c = await nodes("a"), await nodes("b", max_held_requests_per_connection=1), await nodes("c")
    full = await Full.on(clients, b, "job")
    await (await clients(c.port)).serve("job", lambda msg: "c")
    requester = await clients(a.port)

    answers = collections.Counter()
    for i in range(40):  # NATS gives about half of them to b
        try:
            answers[await requester.request("job", i, timeout=5)] += 1
        except LimitExceeded:
            answers["limit_exceeded"] += 1
    assert answers == {"c": 40}
    assert handed(b) >= 1 and handed(a) == handed(c) == 0
    # The requester's own node full: on to c as well.
    assert await (await clients(b.port)).request("job", None, timeout=5) == "c"
    await full.release()
    await until(lambda: not any(n.cluster.outgoing.table or n.cluster.incoming for n in (a, b, c)), "every node forgot the requests")


async def test_limit_exceeded_when_every_node_that_serves_the_channel_is_full(nodes: Nodes, clients: Clients) -> None:
    a, b = await nodes("a"), await nodes("b", max_held_requests_per_connection=1)
    full_b = await Full.on(clients, b, "job")
    requester, on_b = await clients(a.port), await clients(b.port)
    # b alone serves it: handed on, NATS finds no other node (its 503), and that is limit_exceeded, not no_responders.
    with pytest.raises(LimitExceeded):
        await requester.request("job", 1, timeout=5)
    with pytest.raises(LimitExceeded):
        await on_b.request("job", 2, timeout=5)
    assert handed(b) == 2

    c = await nodes("c", max_held_requests_per_connection=1)
    full_c = await Full.on(clients, c, "job")
    for i in range(6):  # each full node hands on once, to the other full one, which refuses it
        with pytest.raises(LimitExceeded):
            await requester.request("job", i, timeout=5)
    assert handed(a) == 0 and handed(b) + handed(c) == 2 + 6
    await full_b.release()
    await full_c.release()


async def test_a_stream_handed_on_gets_every_item_in_order_with_a_small_window(nodes: Nodes, clients: Clients) -> None:
    a, b, c = await nodes("a"), await nodes("b", max_held_requests_per_connection=1), await nodes("c")
    full = await Full.on(clients, b, "job", "count")

    async def count(msg: Message) -> AsyncIterator[int]:
        for i in range(msg.payload):
            yield i

    c.add_handler("count", count)
    await c.cluster.confirmed()
    consumer = await clients(a.port)
    for _ in range(TRIES):
        before = handed(b)
        assert [item async for item in consumer.stream("count", 50, window=2)] == list(range(50))
        if handed(b) > before:
            break
    else:
        raise AssertionError(f"no stream went through b in {TRIES} tries")
    await until(lambda: not any(n.cluster.outgoing.table or n.cluster.incoming or n.cluster.relay for n in (a, b, c)), "every node forgot the streams")
    await full.release()


async def test_a_requester_gone_stops_the_handler_on_the_node_its_request_was_handed_on_to(nodes: Nodes, clients: Clients) -> None:
    a, b, c = await nodes("a"), await nodes("b", max_held_requests_per_connection=1), await nodes("c")
    full = await Full.on(clients, b, "job")
    started: asyncio.Queue[int] = asyncio.Queue()
    cancelled: asyncio.Queue[int] = asyncio.Queue()

    @c.handler("job")
    async def job(msg: Message) -> Any:
        started.put_nowait(msg.payload)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.put_nowait(msg.payload)
            raise

    await c.cluster.confirmed()
    for _ in range(TRIES):  # until NATS gives one to b, which hands it on
        before = handed(b)
        leaving = IPCClient("app", "127.0.0.1", a.port, reconnect=False)
        await asyncio.wait_for(leaving.connect(), WAIT_S)
        call = asyncio.ensure_future(leaving.request("job", "hold", timeout=60))
        assert await asyncio.wait_for(started.get(), WAIT_S) == "hold"
        through_b = handed(b) > before
        await leaving.disconnect()  # a cancels it on every node; b, holding it for a, cancels it on c
        assert await asyncio.wait_for(cancelled.get(), WAIT_S) == "hold"
        with pytest.raises(ConnectionLost):
            await call
        if through_b:
            break
    else:
        raise AssertionError(f"no request went through b in {TRIES} tries")
    await until(lambda: not any(n.cluster.outgoing.table or n.cluster.incoming for n in (a, b, c)), "every node forgot the request")
    await full.release()
