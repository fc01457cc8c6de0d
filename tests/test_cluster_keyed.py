"""Keyed requests across nodes (docs/protocol.md §6.6, docs/cluster.md §3
Cancels, §5) with a real nats-server: the node running another node's
keyed request never stops it because that node gave it up (its cancel,
or its death), as one server does not stop a keyed run when its requester
disconnects. A retry of the key that reaches the responder meanwhile
joins its run (item 10): the handler runs once and the retry gets its
answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ResponderLost
from ipc_server import IPCServer

from .nats_support import NatsServer, NodeProcess, clients, nats, node_process, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0
BEAT_S = 0.1  # heartbeats and notes: the first try's cancel comes within a few of NATS's return

Nodes = Callable[..., Awaitable[IPCServer]]
Clients = Callable[..., Awaitable[IPCClient]]


class Held:
    """A handler that holds until released, counting its starts and cancels."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.starts = 0
        self.cancels = 0

    async def __call__(self, msg: Any) -> str:
        self.starts += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancels += 1
            raise
        return "paid"


async def test_a_retry_after_a_nats_outage_joins_the_run_the_first_try_left(nats: NatsServer, nodes: Nodes, clients: Clients) -> None:  # noqa: F811
    a, b = await nodes("a", cluster_heartbeat_s=BEAT_S), await nodes("b", cluster_heartbeat_s=BEAT_S)
    handler = Held()
    responder = await clients(b.port)
    await responder.serve("pay", handler)
    requester = await clients(a.port)

    first = asyncio.ensure_future(requester.request("pay", {"order": 1}, idempotency_key="K", timeout=30))
    await asyncio.wait_for(handler.started.wait(), WAIT_S)
    await nats.stop()
    with pytest.raises(ResponderLost):  # a can get no answer any more: not stored, a retry runs the key again
        await asyncio.wait_for(first, WAIT_S)
    await nats.start()
    await until(lambda: a.cluster.link.up and b.cluster.link.up, "both nodes back on NATS")
    await until(lambda: a.cluster.members.alive() == ["b"] and b.cluster.members.alive() == ["a"], "the nodes hear each other again")
    first_try = b.cluster.incoming.held(a.cluster.subjects.node, "1")
    assert first_try is not None  # still running at b's responder

    retry = asyncio.ensure_future(requester.request("pay", {"order": 1}, idempotency_key="K", timeout=30))
    # b names the first try in its notes; a, which no longer waits for it, cancels it there.
    await until(lambda: b.cluster.incoming.held(a.cluster.subjects.node, "1") is None, "b dropped the first try")
    await until(lambda: responder._subs.keyed.joined == 1 or retry.done(), "the retry joined the responder's run")
    handler.release.set()
    assert await asyncio.wait_for(retry, WAIT_S) == "paid"
    assert handler.starts == 1 and handler.cancels == 0


async def test_a_keyed_request_runs_on_when_its_requesters_node_dies(
    nats: NatsServer, nodes: Nodes, node_process: Callable[..., Awaitable[NodeProcess]], clients: Clients  # noqa: F811
) -> None:
    a = await node_process(nats.url, "--node-name", "a", "--cluster-heartbeat", str(BEAT_S))
    b = await nodes("b", cluster_heartbeat_s=BEAT_S)
    handler, in_process = Held(), Held()
    b.add_handler("book", in_process)
    await b.cluster.confirmed()
    responder = await clients(b.port)
    await responder.serve("pay", handler)
    requester = await clients(a.port, reconnect=False)
    calls = [asyncio.ensure_future(requester.request(ch, 1, idempotency_key=f"K-{ch}", timeout=30)) for ch in ("pay", "book")]
    await asyncio.wait_for(asyncio.gather(handler.started.wait(), in_process.started.wait()), WAIT_S)

    await a.kill()  # its window of keys dies with it; b notices its silence
    await until(lambda: b.cluster.state()["requests_dropped"] == 2 and not b.cluster.incoming, "b dropped a's requests")
    assert handler.cancels == 0 and in_process.cancels == 0  # neither run stopped

    # The client's resend through another node (here b itself) joins the responder's run.
    resend = asyncio.ensure_future((await clients(b.port)).request("pay", 1, idempotency_key="K-pay", timeout=30))
    await until(lambda: responder._subs.keyed.joined == 1 or resend.done(), "the resend joined the responder's run")
    handler.release.set()
    in_process.release.set()
    assert await asyncio.wait_for(resend, WAIT_S) == "paid"
    assert handler.starts == 1 and handler.cancels == 0
    await until(lambda: not b.cluster.incoming and b.stats.idempotency["running"] == 0, "b is done with both")
    assert in_process.starts == 1 and in_process.cancels == 0
    await asyncio.gather(*calls, return_exceptions=True)
