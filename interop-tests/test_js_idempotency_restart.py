"""Keyed requests of the Node client across a server killed and started
again on the same port (docs/resilience.md §3, docs/protocol.md §6.6): the
server's window of keys went with its process, so the requester's resend
is forwarded to the Node responder again, which joins the run still going
or answers with the answer it kept, and the handler runs once. The
Python client's: tests/test_idempotency_restart.py."""

from __future__ import annotations

import asyncio

import pytest

from conftest import WAIT_S

KEYS = 5
FAST = {"initialDelay": 20, "maxDelay": 100}


@pytest.mark.parametrize("when", ["running", "finished"])
async def test_node_keyed_request_resent_to_a_restarted_server_runs_once_at_its_node_responder(start_server, node_agent, when):
    first = await start_server()
    port = first.port
    responder = await node_agent(port, **FAST)
    await responder.call("serve", channel="jobs.run", kind="gated")
    requester = await node_agent(port, **FAST)
    for i in range(KEYS):
        await requester.call("startRequest", channel="jobs.run", payload=i, timeoutMs=int(WAIT_S * 2000), idempotencyKey=f"job-{i}", tag=i)
    await responder.wait_events("served", KEYS)
    await first.kill()
    await responder.wait_event("disconnected")
    await requester.wait_event("disconnected")
    if when == "finished":
        await responder.call("openGate", channel="jobs.run")  # its answers find no connection: kept
        await responder.wait_events("ended", KEYS)
    await start_server(port=port)
    if when == "running":
        # Each resend reached the responder: it joined its key's run (without it, ran again).
        async with asyncio.timeout(WAIT_S):
            while (await responder.call("keyedRuns"))["joined"] < KEYS and responder.count("served") < 2 * KEYS:
                await asyncio.sleep(0.02)
        await responder.call("openGate", channel="jobs.run")
    done = await requester.wait_events("requestDone", KEYS, timeout=WAIT_S * 2)
    assert sorted((d["ok"], d["payload"]) for d in done) == [(True, i) for i in range(KEYS)]
    assert responder.count("served") == KEYS  # once each, not twice
    runs = await responder.call("keyedRuns")
    assert (runs["joined"], runs["replayed"], runs["running"]) == ((KEYS, 0, 0) if when == "running" else (0, KEYS, 0))
