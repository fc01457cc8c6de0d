"""Inbound backpressure of the Node client against the real server
(js-client/README.md, "Behaviour on the wire"): past `maxConcurrentHandlers`
running handlers a Node responder holds back new requests but keeps reading responses, so a
handler that itself awaits a request to another responder completes under
load instead of waiting for its reply behind a paused socket."""

from __future__ import annotations

import asyncio

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
