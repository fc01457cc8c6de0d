"""Restarts across languages with real processes (docs/protocol.md §13): a
Node client replays its queued requests to a restarted server before the
Python responder they target is back; with the no-responders grace (§13.2)
none fails ``no_responders``, without it every one did. And a rolling
restart under a Node LoadBalancedClient's load, with lame duck (§13.1)."""

from __future__ import annotations

import asyncio
import signal

import pytest

from conftest import WAIT_S
from test_js_pool import pool_agent  # noqa: F401 (a fixture)

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


ROLLING = ("--lame-duck-duration", "1", "--shutdown-grace", "5")


async def test_a_rolling_restart_fails_no_node_balanced_request(start_server, pool_agent, py_client):  # noqa: F811
    """Two servers restarted one after the other (SIGTERM: lame duck, §13.1)
    while a Node LoadBalancedClient sends steady load to a Python responder
    on both: no call fails, and none even fails over."""
    from ipc_client import LoadBalancedClient

    procs = [await start_server(*ROLLING) for _ in range(2)]
    ports = [p.port for p in procs]
    responder = LoadBalancedClient("app", [("127.0.0.1", port) for port in ports], health_check_interval=0.2, initial_delay=0.05, max_delay=0.2)
    await responder.start()
    try:
        await responder.serve("work", lambda m: m.payload)
        agent = await pool_agent("balanced", servers=[f"127.0.0.1:{port}" for port in ports], healthCheckInterval=200, requestTimeout=10000)
        await agent.call("start")
        await agent.call("startLoad", channel="work", concurrency=8, timeoutMs=10000)

        async def settled_past(count: int) -> None:
            async with asyncio.timeout(WAIT_S * 2):
                while (await agent.call("loadStats"))["settled"] <= count:
                    await asyncio.sleep(0.05)

        for index, port in enumerate(ports):
            await settled_past(200 * (index + 1))
            procs[index].signal(signal.SIGTERM)
            leaving = await agent.wait_event("server_leaving", lambda e: e["port"] == port)
            assert leaving["deadlineMs"] == 1000
            assert await asyncio.wait_for(procs[index].proc.wait(), WAIT_S * 2) == 0
            procs[index] = await start_server(*ROLLING, port=port)
            await agent.wait_event("server_up", lambda e: e["port"] == port, timeout=WAIT_S * 2)
            before = (await agent.call("loadStats"))["settled"]
            await settled_past(before + 200)
        summary = await agent.call("stopLoad")
        stats = await agent.call("serverStats")
    finally:
        await responder.close()
    assert summary["failed"] == {} and summary["wrong"] == 0 and summary["settledTwice"] == 0
    assert summary["ok"] == summary["started"] == summary["settled"] > 800
    assert sum(s["errors"] for s in stats) == 0  # none failed over: each went to a server that answered it
