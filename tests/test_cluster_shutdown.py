"""A node's graceful shutdown (docs/protocol.md §13) in a cluster: its grace
waits for the requests it sent to other nodes, and no longer than until
they are answered (as it does for the requests it serves itself); the
node serving one does not take the node's goodbye for its death
(docs/cluster.md §3 Cancels, §5)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer
from ipc_server.cluster.link import FLUSH_TIMEOUT_S

from .nats_support import NatsServer, clients, nats, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

WAIT_S = 10.0
GRACE_S = 30.0  # far longer than any wait below: a close that runs into it fails the test


async def test_close_returns_once_the_request_sent_to_another_node_is_answered(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    a, b = await nodes("a"), await nodes("b")
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(msg: Any) -> Any:
        started.set()
        await release.wait()
        return msg.payload

    await (await clients(b.port)).serve("slow", slow)
    requester = await clients(a.port, reconnect=False)
    pending = asyncio.ensure_future(requester.request("slow", "answer", timeout=GRACE_S))
    await asyncio.wait_for(started.wait(), WAIT_S)
    assert a.cluster.held == 1  # waiting on node b, nothing on node a itself

    closing = asyncio.ensure_future(a.close(grace_s=GRACE_S))
    await until(lambda: a._shutdown.draining, "node a's close waits out its grace")  # the answer must come while it waits
    assert not closing.done()

    release.set()
    assert await asyncio.wait_for(pending, WAIT_S) == "answer"
    await asyncio.wait({closing}, timeout=WAIT_S)  # not wait_for: a close cancelled midway would never end
    assert closing.done(), "close() still waits though nothing is in flight"  # woken by the answer, not the grace's end
    closing.result()
    assert a.cluster.held == 0


async def test_a_request_of_a_node_in_its_grace_is_not_dropped_where_it_runs(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    a, b = await nodes("a"), await nodes("b")
    release = asyncio.Event()

    @b.handler("slow")
    async def slow(msg: Any) -> Any:
        await release.wait()
        return msg.payload

    await b.cluster.confirmed()
    await until(lambda: b.cluster.members.alive() == ["a"], "b hears a")
    requester = await clients(a.port, reconnect=False)
    pending = asyncio.ensure_future(requester.request("slow", "answer", timeout=GRACE_S))
    held = await until(lambda: next(iter(b.cluster.incoming._held.get(a.cluster.subjects.node, {}).values()), None), "the request held on b")
    await until(lambda: monotonic() - held.read_at > 3 * a.config.cluster_heartbeat_s, "the request older than a heartbeat's silence")

    closing = asyncio.ensure_future(a.close(grace_s=GRACE_S))
    await until(lambda: "a" not in b.cluster.members.alive(), "b heard a's goodbye")
    b.cluster.incoming._drop_silent()  # b's sweep, right after the goodbye: a is leaving, not gone
    assert b.cluster.incoming and b.cluster.state()["requests_dropped"] == 0
    release.set()
    assert await asyncio.wait_for(pending, WAIT_S) == "answer"
    await asyncio.wait_for(closing, WAIT_S)
    await until(lambda: not b.cluster.members.heard(), "a gone from b's members once silent")


async def test_a_clustered_close_leaves_its_subscriptions_to_nats_without_warnings(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]], caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    a = await nodes("a")
    client = await clients(a.port, reconnect=False)
    for n in range(3):
        await client.subscribe(f"t{n}.*", lambda msg: None)  # acked once NATS confirmed it
    await client.serve("svc", lambda msg: 1)
    assert a.cluster.interest.patterns() == {"publish": 3, "request": 1}
    caplog.set_level(logging.WARNING, logger="ipc_server")
    await asyncio.wait_for(a.close(), WAIT_S)  # closes the link, then the connections holding those patterns
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert a.cluster.interest._worker is None  # nothing left reconciling on a closed link


async def test_a_close_answers_every_confirmed_caller_while_nats_is_slow(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]]  # noqa: F811
) -> None:
    """A handler added, then the node closing while NATS has not confirmed
    it yet: ``confirmed()`` returns, whether called before or during the close."""
    a = await nodes("a", cluster_heartbeat_s=5.0)  # NATS held slow, not declared stalled (four beats: docs/cluster.md §5)
    interest = a.cluster.interest
    assert nats.proc is not None
    os.kill(nats.proc.pid, signal.SIGSTOP)  # NATS slow: the change's flush waits for its PONG
    try:
        a.add_handler("late.*", lambda msg: 1)  # a change: the worker takes the waiting acks, then NATS's round trip
        await until(lambda: interest._worker is not None and not interest._dirty, "the change under way")
        before = asyncio.ensure_future(a.cluster.confirmed())  # after the worker took its acks: left for the next round
        closing = asyncio.ensure_future(interest.close())  # Cluster.close(): lets the change under way finish
        await until(lambda: interest._closed, "the close begun")
        during = asyncio.ensure_future(a.cluster.confirmed())  # nothing more is confirmed: returns at once
        await asyncio.wait({during}, timeout=FLUSH_TIMEOUT_S / 2)  # within the flush's own bound: not waiting it out
        assert during.done(), "confirmed() called during the close waits for NATS"
        assert not closing.done() and not before.done()
    finally:
        os.kill(nats.proc.pid, signal.SIGCONT)
    await asyncio.wait({closing}, timeout=WAIT_S)
    assert closing.done(), "Interest.close() still waits for the change under way"
    await asyncio.wait({before}, timeout=WAIT_S)
    assert before.done(), "confirmed() called before the close never returned"
    assert interest._worker is None and interest._waiting == []


def _state(pid: int) -> str:
    """A process's state letter (``T``: stopped), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


async def test_a_close_while_nats_does_not_answer_drains_nothing_and_logs_no_error(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    """NATS stopped: the shutdown's flush has no answer, so the link is
    closed without nats-py's drain, which waited out 5 s more and then its
    own 10 s flush, and left a gather whose exception asyncio logged."""
    a = await nodes("a")
    link = a.cluster.link
    drains: list[int] = []
    real_drain = link.nc.drain

    async def drain() -> None:
        drains.append(1)
        await real_drain()

    link.nc.drain = drain
    caplog.set_level(logging.INFO)
    assert nats.proc is not None
    os.kill(nats.proc.pid, signal.SIGSTOP)
    try:
        await until(lambda: _state(nats.proc.pid) == "T", "NATS stopped")  # kill() returns before the stop takes hold
        await asyncio.wait_for(a.close(), WAIT_S * 3)  # a hang guard: the flush's 5 s and the close
    finally:
        os.kill(nats.proc.pid, signal.SIGCONT)
    assert drains == [] and link.answering is False
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
