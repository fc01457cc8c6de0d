"""Requests crossing to a node while its last responder of the channel
leaves it (docs/cluster.md §3 Requests): NATS hands a node requests until
it has read the node's UNSUB, so a request may reach a node that no longer
serves its channel. That node answers it ``no_responders`` itself, at
once, rather than dropping it unseen and leaving its requester's node to
take it for lost (``responder_lost``, 1.5 s later, when the node stops
naming it). Real nodes on a real nats-server; the responder leaves and
comes back while requesters on another node keep asking."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import NoResponders, ResponderLost
from ipc_server import IPCServer

from .nats_support import clients, nats, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

CYCLES = 25
REQUESTERS = 4
# Well under the 1.5 s after which a node that stops naming a request has it taken for lost.
BOUND_S = 1.0


async def test_requests_crossing_as_the_last_responder_leaves_are_answered_no_responders_at_once(
    nodes: Callable[..., Awaitable[IPCServer]], clients: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    b, c = await nodes("b"), await nodes("c")
    responder = await clients(b.port)

    async def job(msg: Any) -> str:
        return "done"

    await responder.serve("job", job)
    on_c = [await clients(c.port) for _ in range(REQUESTERS)]
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def ask(client: IPCClient) -> None:
        nonlocal slowest
        while not stop.is_set():
            start = loop.time()
            try:
                assert await client.request("job", timeout=5) == "done"
                outcomes["ok"] += 1
            except NoResponders as exc:
                outcomes["no_responders"] += 1
                if "it left node b" in str(exc):  # b answered it: the request crossed as the responder left
                    outcomes["crossed"] += 1
            except ResponderLost:
                outcomes["responder_lost"] += 1
            slowest = max(slowest, loop.time() - start)

    async def more(outcome: str, count: int) -> None:
        target = outcomes[outcome] + count
        await until(lambda: outcomes[outcome] >= target, f"{count} more {outcome}")

    askers = [asyncio.ensure_future(ask(client)) for client in on_c]
    try:
        await more("ok", 10)
        for _ in range(CYCLES):  # the only responder of 'job' leaves b and comes back, requests crossing all along
            await responder.unserve("job")
            await more("no_responders", 2 * REQUESTERS)
            await responder.serve("job", job)
            await more("ok", 2 * REQUESTERS)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*askers), 10)
    stats = (await on_c[0].system("stats"))["cluster"]
    assert outcomes["responder_lost"] == 0 and stats["requests_lost"] == 0, (outcomes, slowest)
    assert slowest < BOUND_S, (outcomes, slowest)
    assert outcomes["ok"] and outcomes["no_responders"]
    assert outcomes["crossed"], outcomes  # the race ran: b took requests after its responder left (12-28 of them lost before)
