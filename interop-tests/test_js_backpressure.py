"""Backpressure of the Node client against the real server
(js-client/README.md, "Behaviour on the wire"). Inbound: past
`maxConcurrentHandlers` running handlers a Node responder holds back new
requests but keeps reading responses, so a handler that itself awaits a
request to another responder completes under load instead of waiting for
its reply behind a paused socket. Outbound: a publish or notify that finds
the socket's buffer full (the server SIGSTOPped) waits before it is written,
so one that rejects at its deadline was never sent (docs/resilience.md §4)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from conftest import WAIT_S


async def test_node_relay_responder_with_few_concurrent_handlers_completes_under_load(server, node_agent, py_client):
    backend = await node_agent(server.port)
    await backend.call("serve", channel="relay.backend", kind="slow", delayMs=5)
    relay = await node_agent(server.port, maxConcurrentHandlers=2)
    await relay.call("serve", channel="relay.front", kind="relay", target="relay.backend", timeoutMs=8000)
    py = await py_client(server.port)
    n = 60  # far past 4 x maxConcurrentHandlers held back at once
    results = await asyncio.wait_for(
        asyncio.gather(*(py.request("relay.front", i, timeout=WAIT_S) for i in range(n))), WAIT_S + 2
    )
    assert results == list(range(n))
    info = await relay.call("info")
    assert (info["runningHandlers"], info["heldMessages"]) == (0, 0)
    assert relay.count("error") == 0


@pytest.mark.parametrize("op", ["publish", "notify"])
async def test_node_one_way_rejected_on_a_full_buffer_is_never_delivered(server, node_agent, py_client, op):
    received: list[int] = []
    done = asyncio.Event()
    sub = await py_client(server.port)

    def on_message(msg: Any) -> None:
        if msg.channel_id == "bp.end":
            done.set()
        else:
            received.append(msg.payload["i"])

    async def answer(msg: Any) -> None:  # on the loop, as the subscription's handler
        on_message(msg)

    if op == "publish":
        await sub.subscribe("bp.>", on_message)
    else:
        await sub.serve("bp.>", answer)
    node = await node_agent(server.port)
    server.signal(signal.SIGSTOP)  # it stops reading: the socket's buffers fill up
    try:
        fill = await node.call("fill", channel="bp.x", size=256 * 1024, timeoutMs=200, rejections=3, max=400, notify=op == "notify")
    finally:
        server.signal(signal.SIGCONT)
    assert len(fill["failed"]) == 3, fill["failed"]
    await node.call(op, channel="bp.end", timeoutMs=WAIT_S * 1000)
    await asyncio.wait_for(done.wait(), WAIT_S)
    assert received == fill["ok"]  # exactly what resolved, in order; none of the rejected
    assert fill["buffered"] < 512 * 1024  # no rejected one added to the socket's buffer
    for failure in fill["failed"]:
        assert failure["error"]["code"] == "timeout"
        assert "was not sent" in failure["error"]["message"]
    assert (await node.call("metrics"))["messagesFailed"] == 3
