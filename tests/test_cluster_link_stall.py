"""A backed-up NATS link (docs/cluster.md §5, §6), against a real
nats-server SIGSTOPped by the test: what a node holds for NATS stays
within ``cluster_max_pending_bytes`` under a publishing flood, publishes
past it are dropped and counted, new requests fail ``no_responders`` at
once, and everything comes back after SIGCONT."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import NoResponders
from ipc_server import IPCServer

from .nats_support import NatsServer, clients, nats, nodes, until  # noqa: F401 - fixtures

nats_py = pytest.importorskip("nats")

MESSAGE = 64 * 1024
# Besides the bound and the message that reached it: heartbeats, notes, a request (a few hundred bytes).
SMALL_ONES = 16 * 1024


@contextmanager
def paused(server: NatsServer) -> Iterator[None]:
    """nats-server SIGSTOPped: its sockets stay open and take nothing."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


async def fill(publish: Callable[[], Awaitable[Any]], link: Any, bound: int, most: int = 8000) -> int:
    """Publish until the link refuses one, holds ``bound`` and keeps it (the
    socket's buffers take the first megabytes); the publishes made."""
    made = 0
    while made < most:
        await publish()
        made += 1
        if link.refused and link.held >= bound:
            await asyncio.sleep(0.05)  # the flusher's turn: still held, NATS takes nothing
            if link.held >= bound:
                return made
    raise AssertionError(f"the link never held {bound} bytes: {link!r}")


async def test_a_backed_up_link_refuses_new_requests_at_once_and_drains_when_nats_takes_again(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    bound = 1024 * 1024
    a = await nodes("a", cluster_max_pending_bytes=bound, cluster_heartbeat_s=3.0)  # no stall declared within the test
    b = await nodes("b")
    on_a, on_b = await clients(a.port), await clients(b.port)
    await on_b.serve("echo", lambda msg: msg.payload)
    assert await on_a.request("echo", 1) == 1
    link, cluster = a.cluster.link, a.cluster  # type: ignore[union-attr]
    local: list[Any] = []
    await on_a.subscribe("flood", lambda msg: local.append(1))
    payload = "z" * MESSAGE
    with paused(nats):
        await fill(lambda: on_a.publish("flood", payload), link, bound)
        assert link.up and link.refused
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(NoResponders, match="backed up"):
            await asyncio.wait_for(on_a.request("echo", 2, timeout=10), 2)
        assert loop.time() - t0 < 1.0
        not_sent = cluster.publishes_not_sent
        assert await asyncio.wait_for(on_a.publish("flood", "one more", ack=True), 2) == 1  # its node's subscriber only
        assert cluster.publishes_not_sent == not_sent + 1 and link.held <= bound + MESSAGE + SMALL_ONES
    await until(lambda: link.held == 0, "the link drains once NATS takes again")
    assert link.up
    assert await on_a.request("echo", 3) == 3
