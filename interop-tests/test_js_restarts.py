"""Restarts across languages with real processes (docs/protocol.md §13): a
Node client replays its queued requests to a restarted server before the
Python responder they target is back; with the no-responders grace (§13.2)
none fails ``no_responders``, without it every one did."""

from __future__ import annotations

import asyncio

import pytest

from conftest import WAIT_S

FAST = {"initialDelay": 20, "maxDelay": 100}
REQUESTS = 300


async def until(predicate) -> None:
    async with asyncio.timeout(WAIT_S * 2):
        while not await predicate():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(("grace", "failed"), [((), 0), (("--no-responders-grace", "0"), REQUESTS)], ids=["grace", "no-grace"])
async def test_node_replays_wait_for_the_python_responder(start_server, node_agent, py_client, grace, failed):
    srv = await start_server(*grace)
    port = srv.port
    responder = await py_client(port, initial_delay=0.05, max_delay=0.2)
    await responder.serve("work", lambda m: m.payload)
    monitor = await py_client(port, initial_delay=0.02, max_delay=0.1)
    requester = await node_agent(port, **FAST)
    assert (await requester.call("request", channel="work", payload=-1))["payload"] == -1
    await srv.kill()
    await requester.wait_event("reconnecting")
    await responder.disconnect()  # it comes back later, by hand
    for i in range(REQUESTS):
        await requester.call("startRequest", channel="work", payload=i, timeoutMs=WAIT_S * 4000, tag=i)
    await start_server(*grace, port=port)

    async def replayed() -> bool:
        if not monitor.connected:
            return False
        holding = (await monitor.request("system", {"action": "stats"}, timeout=WAIT_S))["grace"]["holding"]
        return holding == REQUESTS or requester.count("requestDone") == REQUESTS

    await until(replayed)
    await responder.connect()  # restores its registration
    done = await requester.wait_events("requestDone", REQUESTS, timeout=WAIT_S * 4)
    codes = [d["error"]["code"] for d in done if not d["ok"]]
    assert codes.count("no_responders") == failed and len(codes) == failed
    if not failed:
        assert sorted(d["payload"] for d in done) == list(range(REQUESTS))
