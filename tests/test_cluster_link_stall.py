"""A stalled or backed-up NATS link (docs/cluster.md §5, §6), against a real
nats-server SIGSTOPped by the test: what a node holds for NATS stays
within ``cluster_max_pending_bytes`` under a publishing flood, publishes
past it are dropped and counted, new requests fail ``no_responders`` at
once, the stall is noticed within a few heartbeat intervals (the node
goes degraded, what it held is dropped), also while the kernel's socket
buffers still take what the node writes, and everything comes back after
SIGCONT."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import NoResponders, ResponderLost
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


async def test_a_stalled_link_holds_its_bound_then_drops_it_goes_down_and_comes_back(nats: NatsServer) -> None:  # noqa: F811
    from ipc_server.cluster.link import Link, LinkSettings
    from ipc_server.cluster.link_watch import STALL_INTERVALS

    async def nothing() -> None:
        pass

    bound, beat = 256 * 1024, 0.25
    downs: list[int] = []
    link = Link(LinkSettings([nats.url], "test", heartbeat_s=beat, max_pending=bound), on_down=lambda: downs.append(1), on_up=lambda: None, prepare=nothing)
    reader = await nats_py.connect(nats.url)
    got: list[bytes] = []

    async def take(msg: Any) -> None:
        got.append(msg.data)

    await reader.subscribe("after", cb=take)
    await reader.flush()
    link.start()
    await asyncio.wait_for(link.ever_up.wait(), 10)
    body = b"x" * MESSAGE
    loop = asyncio.get_running_loop()
    try:
        with paused(nats):

            async def publish() -> None:
                link.publish("flood", body, new=True)

            await fill(publish, link, bound)
            full_at = loop.time()
            assert link.refused and bound <= link.held <= bound + MESSAGE + SMALL_ONES
            refused = link.refused
            assert not link.publish("flood", b"small", new=True) and link.refused == refused + 1
            assert not link.too_large(MESSAGE)  # refused for the bound, not the size
            # what follows up on accepted work goes on, to twice the bound
            for _ in range(100):
                if not link.publish("answers", body):
                    break
            assert 2 * bound <= link.held <= 2 * bound + MESSAGE + SMALL_ONES and link.refused == refused + 2
            await until(lambda: not link.up, "the stall noticed", timeout=(STALL_INTERVALS + 1) * beat + 1.0)
            assert loop.time() - full_at <= (STALL_INTERVALS + 1) * beat + 1.0
            assert link.stalls == 1 and downs == [1] and "stalled" in link.reason
            assert link.held == 0  # what it held is dropped, not sent later
            assert not link.publish("flood", body, new=True)
        await until(lambda: link.up, "the link back after SIGCONT", timeout=15)
        assert link.publish("after", b"1", new=True)
        await until(lambda: got == [b"1"], "a publish through the new connection")
        assert await link.flush() and link.held == 0 and link.stalls == 1
    finally:
        await link.close()
        await reader.close()


async def test_a_node_flooding_a_stalled_link_stays_bounded_goes_degraded_and_recovers(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    from ipc_server.cluster.link_watch import STALL_INTERVALS

    bound, beat = 1024 * 1024, 0.2
    a = await nodes("a", cluster_max_pending_bytes=bound, cluster_heartbeat_s=beat)
    b = await nodes("b", cluster_heartbeat_s=beat)
    on_a, on_b = await clients(a.port), await clients(b.port)
    got: list[Any] = []
    await on_b.subscribe("flood", lambda msg: got.append(msg.payload))
    await on_b.serve("echo", lambda msg: msg.payload)
    assert await on_a.request("echo", 1) == 1
    link, cluster = a.cluster.link, a.cluster  # type: ignore[union-attr]
    out, not_sent = cluster.publishes_out, cluster.publishes_not_sent
    loop = asyncio.get_running_loop()
    payload = "z" * MESSAGE
    with paused(nats):
        waiting = asyncio.ensure_future(on_a.request("echo", 2, timeout=30))
        made, peak, full_at = 0, 0, 0.0
        while link.up and made < 8000:  # a client publishing as fast as it can
            await on_a.publish("flood", payload)
            made += 1
            peak = max(peak, link.held)
            if not full_at and link.refused:
                full_at = loop.time()
        assert not link.up, f"never noticed the stall: {link!r}"
        assert loop.time() - full_at <= (STALL_INTERVALS + 1) * beat + 1.0
        assert peak <= bound + MESSAGE + SMALL_ONES
        with pytest.raises(ResponderLost):  # b silent, or a's link gone: not at its 30 s deadline
            await asyncio.wait_for(waiting, 1)
        with pytest.raises(NoResponders, match="cut off from the cluster"):
            await asyncio.wait_for(on_a.request("echo", 3), 1)
        await until(lambda: cluster.publishes_out + cluster.publishes_not_sent - out - not_sent == made, "every publish counted")
        stats = (await on_a.system("stats"))["cluster"]
        assert stats["state"] == "degraded" and "stalled" in stats["reason"] and stats["link_stalls"] == 1
        assert stats["link_refused"] == link.refused > 0 and stats["link_pending_bytes"] == 0
        handed = cluster.publishes_out - out  # into the socket's buffers (a few MiB on loopback) and the link's bound
        assert handed * MESSAGE <= bound + 16 * 1024 * 1024 and stats["publishes_not_sent"] - not_sent == made - handed > 0
    await until(lambda: link.up, "a rejoins after SIGCONT", timeout=15)
    assert await on_a.request("echo", 4) == 4
    await on_a.publish("flood", "after")
    await until(lambda: "after" in got, "a publish crosses again")
    stats = (await on_a.system("stats"))["cluster"]
    assert stats["state"] == "up" and stats["link_pending_bytes"] < bound


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
    assert link.up and link.stalls == 0
    assert await on_a.request("echo", 3) == 3


async def test_a_frozen_nats_is_noticed_within_a_few_intervals_while_the_kernel_still_takes_what_the_node_writes(
    nats: NatsServer, nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    a = await nodes("a")  # the default heartbeat, 0.5 s: noticed within four intervals, 2 s
    b = await nodes("b")
    on_a, on_b = await clients(a.port), await clients(b.port)
    got: list[Any] = []
    await on_b.subscribe("trickle", lambda msg: got.append(msg.payload))
    await on_a.publish("trickle", "before", ack=True)
    await until(lambda: got == ["before"], "a publish crosses")
    link = a.cluster.link  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    payload = "t" * 2000
    made = 0

    async def writing() -> bool:
        """One publish per poll (every 20 ms: 100 KB/s, which the socket's buffers take for minutes) until the stall is seen."""
        nonlocal made
        if not link.up:
            return True
        await asyncio.wait_for(on_a.publish("trickle", payload, ack=True), 2)
        made += 1
        return False

    with paused(nats):
        frozen_at = loop.time()
        await until(writing, "the frozen NATS noticed", timeout=6.0)  # documented: 2 s; unnoticed for 10 s and more before
        noticed = loop.time() - frozen_at
        assert made > 10 and link.refused == 0, (made, link)  # never near its bound: the kernel took every byte, NATS read none
        stats = (await on_a.system("stats"))["cluster"]
        assert stats["state"] == "degraded" and "answered no PING" in stats["reason"] and stats["link_stalls"] == 1, (noticed, stats)
    await until(lambda: link.up, "a rejoins after SIGCONT", timeout=15)
    await on_a.publish("trickle", "after", ack=True)
    await until(lambda: "after" in got, "a publish crosses again")
