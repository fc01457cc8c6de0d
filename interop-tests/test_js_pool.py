"""The Node connection pool and load-balanced client against the real Python
server (docs/resilience.md §7, §8): a pool of N connections serves
concurrent calls answered by Python handlers and responders and its counts
add up; dead members are replaced after the server is killed and another
started; a balanced client over two servers fails over when one is killed,
every call settling exactly once and within its deadline.

The Node side is ``node/pool_agent.js``, driven over JSON lines like
``node/agent.js``; it generates the load itself and checks each call."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from conftest import LINE_LIMIT, NODE_DIR, ROOT, WAIT_S, NodeAgent


@pytest.fixture
async def pool_agent(node: str) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await pool_agent(kind="pool", port=..., servers=[...], **options)``."""
    agents: list[NodeAgent] = []

    async def make(kind: str = "pool", *, port: int = 0, servers: list[str] | None = None, **options: Any) -> NodeAgent:
        config = {"kind": kind, "port": port, "servers": servers or [], "fastBackoff": True, "options": options}
        log = tempfile.TemporaryFile()
        proc = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / "pool_agent.js"), json.dumps(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
            cwd=ROOT, limit=LINE_LIMIT,
        )
        agent = NodeAgent(proc, log)
        agents.append(agent)
        await agent.wait_event("ready")
        return agent

    yield make
    for agent in agents:
        await agent.close()


async def until(check: Callable[[], Any], *, timeout: float = WAIT_S) -> Any:
    """Polls an async check until it returns something truthy (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def all_ok(summary: dict[str, Any], count: int) -> None:
    assert summary["failed"] == {}, summary
    assert (summary["started"], summary["settled"], summary["ok"]) == (count, count, count), summary
    assert (summary["settledTwice"], summary["wrong"], summary["overDeadline"]) == (0, 0, 0), summary


async def test_pool_serves_concurrent_calls_to_python_handlers_and_responders(handler_server, py_client, pool_agent):
    py = await py_client(handler_server.port)
    seen = 0
    running = 0
    peak = 0

    async def slow_echo(msg: Any) -> Any:
        nonlocal seen, running, peak
        seen += 1
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return msg.payload

    await py.serve("py.client.echo", slow_echo)
    agent = await pool_agent(port=handler_server.port, minConnections=1, maxConnections=4)
    await agent.call("start")
    assert await agent.call("stats") == {"total": 1, "available": 1, "inUse": 0, "pending": 0, "totalCreated": 1, "totalDestroyed": 0}

    handled = await agent.call("burst", channel="py.echo", count=300, timeoutMs=5000)
    all_ok(handled, 300)
    assert handled["peakBusy"] == 4  # grew to maxConnections, never beyond

    responded = await agent.call("burst", channel="py.client.echo", count=200, timeoutMs=5000)
    all_ok(responded, 200)
    assert seen == 200
    assert 1 < peak <= 4  # the Python responder saw the pool's concurrency

    stats = await agent.call("stats")
    assert stats == {"total": 4, "available": 4, "inUse": 0, "pending": 0, "totalCreated": 4, "totalDestroyed": 0}
    assert stats["total"] == stats["available"] + stats["inUse"]


async def test_pool_replaces_dead_members_after_the_server_is_killed_and_another_started(start_server, pool_agent):
    srv = await start_server(handlers=True)
    port = srv.port
    agent = await pool_agent(port=port, minConnections=2, maxConnections=4, acquireTimeout=3000)
    await agent.call("start")
    all_ok(await agent.call("burst", channel="py.echo", count=50, timeoutMs=5000), 50)
    before = await agent.call("stats")

    await srv.kill()
    await agent.wait_events("connection_lost", before["total"])
    stats = await agent.call("stats")
    assert (stats["total"], stats["totalDestroyed"]) == (0, before["total"])

    # While no server listens, calls fail at once with not_connected, not at the acquire timeout.
    down = await agent.call("burst", channel="py.echo", count=20, timeoutMs=5000)
    assert down["failed"] == {"not_connected": 20}
    assert down["settled"] == 20 and down["settledTwice"] == 0
    assert down["maxElapsedMs"] < 1000

    await start_server(handlers=True, port=port)

    async def refilled() -> bool:
        return (await agent.call("stats"))["total"] >= 2

    await until(refilled)
    all_ok(await agent.call("burst", channel="py.echo", count=50, timeoutMs=5000), 50)
    stats = await agent.call("stats")
    assert stats["totalCreated"] >= before["totalCreated"] + 2
    assert stats["total"] == stats["available"] + stats["inUse"]
    assert stats["totalCreated"] - stats["totalDestroyed"] == stats["total"]


async def test_balanced_client_fails_over_when_a_server_is_killed(start_server, pool_agent):
    a = await start_server(handlers=True)
    b = await start_server(handlers=True)
    agent = await pool_agent(
        "balanced",
        servers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
        maxConnections=4,
        healthCheckInterval=200,
        healthCheckTimeout=500,
    )
    await agent.call("start")
    await agent.call("startLoad", channel="py.echo", concurrency=16, timeoutMs=3000)

    async def both_serving() -> bool:
        return all(s["requests"] >= 50 for s in await agent.call("serverStats"))

    await until(both_serving)
    await a.kill()
    down = await agent.wait_event("server_down")
    assert down["port"] == a.port
    at_kill = (await agent.call("serverStats"))[1]["requests"]

    async def moved() -> bool:
        return (await agent.call("serverStats"))[1]["requests"] >= at_kill + 500

    await until(moved)
    summary = await agent.call("stopLoad")
    all_ok(summary, summary["started"])
    assert summary["maxElapsedMs"] < 3000

    sa, sb = await agent.call("serverStats")
    assert (sa["healthy"], sb["healthy"]) == (False, True)
    assert sa["requests"] + sb["requests"] == summary["started"] + sa["errors"] + sb["errors"]
    assert sb["errors"] == 0


async def test_balanced_client_serves_and_subscribes_on_every_server(start_server, pool_agent, py_client):
    a = await start_server()
    b = await start_server()
    agent = await pool_agent("balanced", servers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    await agent.call("start")
    await agent.call("serve", channel="node.echo")
    await agent.call("subscribe", channel="news.>")
    for srv in (a, b):
        py = await py_client(srv.port)
        assert (await py.send_request("node.echo", srv.port, timeout=WAIT_S)).payload == {"by": "node", "payload": srv.port}
        assert await py.publish("news.today", srv.port, ack=True) == 1
        got = await agent.wait_event("message")
        assert (got["channel"], got["payload"]) == ("news.today", srv.port)


async def test_balanced_client_runs_calls_at_once_on_one_connection_per_server(start_server, pool_agent, py_client):
    """Calls share each server's connection: with maxConnections 1, every
    call of a burst reaches a Python responder before any is answered."""
    count = 32
    servers = [await start_server(), await start_server()]
    all_in = asyncio.Event()
    running = 0
    peak = 0

    async def gated_echo(msg: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == count:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), WAIT_S)  # serialised calls would never get here all at once
        return msg.payload

    for srv in servers:
        await (await py_client(srv.port)).serve("py.gated", gated_echo)
    agent = await pool_agent("balanced", servers=[f"127.0.0.1:{s.port}" for s in servers], maxConnections=1)
    await agent.call("start")
    summary = await agent.call("burst", channel="py.gated", count=count, timeoutMs=int(WAIT_S * 1000) + 5000)
    all_ok(summary, count)
    assert peak == count
    pools = await agent.call("stats")
    assert [(p["total"], p["totalCreated"], p["inUse"]) for p in pools.values()] == [(1, 1, 0), (1, 1, 0)]
    assert [s["requests"] for s in await agent.call("serverStats")] == [count // 2, count // 2]


async def test_pool_subscribes_and_serves_on_one_member_restored_after_a_restart(start_server, pool_agent, py_client):
    """Node's pool keeps registrations on one member, as the Python pool: each
    publish is delivered once whatever the pool's size, and they come back
    on a member of the pool once the server is back."""
    srv = await start_server()
    port = srv.port
    agent = await pool_agent(port=port, minConnections=2, maxConnections=4)
    await agent.call("start")
    assert await agent.call("subscribe", channel="news.>") is True
    assert await agent.call("serve", channel="node.echo") is True
    py = await py_client(port)
    assert await py.publish("news.today", 1, ack=True) == 1  # one member holds it, not two
    assert (await agent.wait_event("message"))["payload"] == 1
    assert (await py.send_request("node.echo", 2, timeout=WAIT_S)).payload == {"by": "node", "payload": 2}
    assert await agent.call("request", channel="node.echo", payload=3, timeoutMs=5000) == {"by": "node", "payload": 3}

    await srv.kill()
    await agent.wait_events("connection_lost", 2)
    await start_server(port=port)
    py = await py_client(port)

    async def restored() -> bool:
        return await py.publish("news.today", 4, ack=True) == 1

    await until(restored)
    assert (await agent.wait_event("message"))["payload"] == 4
    assert (await py.send_request("node.echo", 5, timeout=WAIT_S)).payload == {"by": "node", "payload": 5}
    assert agent.count("message") == 2  # once each
