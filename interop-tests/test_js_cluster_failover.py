"""The Node client when its cluster node is SIGKILLed (docs/cluster.md §5),
with a real nats-server and nodes in their own processes:

- an IPCClient given ``localhost``, which resolves to a node on 127.0.0.1
  and one on ::1 (the same port), moves to the other node and restores its
  subscriptions and registrations there, and connects through the second
  address when the first never answers (the Python twins and the set-up are
  tests/test_cluster_dns_failover.py);
- a LoadBalancedClient under continuous load over three nodes, one of
  which is killed: every call ends once, those in flight settle within 2 s
  (never at their own deadline), later calls succeed, its subscription moves
  and receives what is published after (the Python twin is
  tests/test_cluster_failures.py)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from conftest import LINE_LIMIT, NODE_DIR, ROOT, WAIT_S, NodeAgent
from ipc_client import LoadBalancedClient
from ipc_server import IPCServer
from tests.nats_support import NatsServer, NodeProcess, nats, node_process, nodes, until  # noqa: F401 - fixtures
from tests.test_cluster_dns_failover import (  # noqa: F401 - fixtures
    ADDRESSES, NAME, DualNodes, connected, dual_nodes, first_address, silent_first_address, two_addresses,
)

pytest.importorskip("nats")

SETTLE_MS = 2000  # docs/cluster.md §5: in-flight requests settle within 2 s of a node's death
TIMEOUT_MS = 30_000  # the calls' own deadline, far beyond it
HEARTBEAT_S = 0.25


async def test_a_node_client_of_a_name_with_two_addresses_moves_to_the_other_node_when_its_node_is_killed(
    dual_nodes: DualNodes, node_agent: Callable[..., Any]  # noqa: F811
) -> None:
    agent = await node_agent(dual_nodes.port, host=NAME, initialDelay=50, maxDelay=200)
    first = (await agent.call("system", action="stats"))["cluster"]["node"]
    assert ADDRESSES[first] == first_address()  # so the kill leaves the name's first address dead
    survivor = dual_nodes.other(first)
    async with connected(ADDRESSES[survivor], dual_nodes.port) as observer:
        await agent.call("subscribe", channel="news.*")
        await agent.call("serve", channel="named.echo", kind="echo")
        release, holding = asyncio.Event(), asyncio.Event()

        async def held(msg: Any) -> Any:
            holding.set()
            await release.wait()
            return msg.payload

        await observer.serve("observer.held", held)
        await observer.serve("observer.echo", lambda msg: msg.payload)
        assert await observer.request("named.echo", 1) == 1
        await observer.publish("news.before", "before")
        await agent.wait_event("message", lambda e: e["payload"] == "before")
        await agent.call("startRequest", channel="observer.held", payload="held", timeoutMs=TIMEOUT_MS, tag="held")
        await asyncio.wait_for(holding.wait(), WAIT_S)

        await dual_nodes.nodes[first].kill()
        done = await agent.wait_event("requestDone", lambda e: e["tag"] == "held")
        assert not done["ok"] and done["error"]["code"] == "connection_lost"  # it may have run: never resent without a key
        await agent.wait_event("reconnected")  # subscriptions and registrations restored first
        release.set()
        assert (await agent.call("system", action="stats"))["cluster"]["node"] == survivor
        assert await observer.request("named.echo", 2) == 2
        assert (await agent.call("request", channel="observer.echo", payload=3))["payload"] == 3
        await observer.publish("news.after", "after")
        await agent.wait_event("message", lambda e: e["payload"] == "after")
        assert [e["payload"] for e in agent.events if e["event"] == "message"] == ["before", "after"]


async def test_a_node_client_of_a_name_with_two_addresses_connects_through_the_second_when_the_first_never_answers(
    silent_first_address: int, node_agent: Callable[..., Any]  # noqa: F811
) -> None:
    # the next address is tried after 250 ms (autoSelectFamilyAttemptTimeout), not after connectTimeout
    agent = await node_agent(silent_first_address, host=NAME, connectTimeout=WAIT_S * 1000)
    assert (await agent.call("system", action="ping"))["status"] == "pong"


@pytest.fixture
async def failover_agent(node: str) -> AsyncIterator[Callable[..., Awaitable[NodeAgent]]]:
    """Factory: ``await failover_agent(servers, **options)``, node/failover_agent.js started."""
    agents: list[NodeAgent] = []

    async def make(servers: list[str], **options: Any) -> NodeAgent:
        log = tempfile.TemporaryFile()
        proc = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / "failover_agent.js"), json.dumps({"servers": servers, "options": options}),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ROOT, limit=LINE_LIMIT,
        )  # fmt: skip
        agent = NodeAgent(proc, log)
        agents.append(agent)
        await agent.wait_event("ready")
        await agent.call("start")
        return agent

    yield make
    for agent in agents:
        await agent.close()


def after_kill_ms(record: dict[str, Any], killed_at: float) -> float:
    """How long a call ran after the kill (its whole run if it started after)."""
    return float(record["end"]) - max(float(record["start"]), killed_at)


async def test_a_node_load_balanced_client_goes_on_through_a_node_killed_mid_load(
    nats: NatsServer,  # noqa: F811
    nodes: Callable[..., Awaitable[IPCServer]],  # noqa: F811
    node_process: Callable[..., Awaitable[NodeProcess]],  # noqa: F811
    failover_agent: Callable[..., Awaitable[NodeAgent]],
    py_client: Callable[..., Any],
) -> None:
    # a quarter-second heartbeat: a held request is lost after 0.75-0.9 s instead of 1.5-1.75 s, which
    # leaves the scheduling of a loaded machine room below the 2 s bound
    a, c = await nodes("a", cluster_heartbeat_s=HEARTBEAT_S), await nodes("c", cluster_heartbeat_s=HEARTBEAT_S)
    b = await node_process(nats.url, "--node-name", "b", "--cluster-heartbeat", str(HEARTBEAT_S))
    release = asyncio.Event()
    held: list[Any] = []

    async def hold(msg: Any) -> Any:
        held.append(msg.payload)
        await release.wait()
        return msg.payload

    # "held" on b and c, "all" on every node (the load-balanced client registers on every server), "solo" on c alone
    responder = LoadBalancedClient("app", [("127.0.0.1", p) for p in (a.port, b.port, c.port)], health_check_interval=60)
    await responder.start()
    try:
        await responder.serve("all.echo", lambda msg: msg.payload)
        py_on_a, py_on_c, on_b = await py_client(a.port), await py_client(c.port), await py_client(b.port, reconnect=False)
        await on_b.serve("held", hold)
        await py_on_c.serve("held", hold)
        await py_on_c.serve("solo.echo", lambda msg: msg.payload)
        agent = await failover_agent([f"127.0.0.1:{p}" for p in (b.port, a.port, c.port)], healthCheckInterval=60_000, initialDelay=50, maxDelay=200)
        await agent.call("subscribe", channel="jobs.*")  # on b, the first of the list
        assert await on_b.publish("jobs.1", "before", ack=True) == 1
        await agent.wait_event("message", lambda e: e["payload"] == "before")

        # 60 held requests, a third through each node: a's go to b or c (NATS's choice; 2^-20 that none went to b)
        for i in range(60):
            await agent.call("startRequest", channel="held", payload=i, timeoutMs=TIMEOUT_MS, tag=i)
        await until(lambda: len(held) == 60, "60 requests at the responders on b and c")
        for name, channel in (("all", "all.echo"), ("solo", "solo.echo")):
            await agent.call("startLoad", name=name, channel=channel, concurrency=4, timeoutMs=TIMEOUT_MS)
        for name in ("all", "solo"):
            await until(lambda n=name: _ok_at_least(agent, n, 20), f"the {name} load running")

        killed_at = await agent.call("now")  # the agent's clock, just before the kill
        await b.kill()
        release.set()
        await agent.wait_event("server_down", lambda e: e["port"] == b.port)
        moved = await agent.wait_event("subscription_moved")
        assert (moved["channel"], moved["from"]) == ("jobs.*", b.port) and moved["to"] in (a.port, c.port)
        ok_at_kill = {name: await agent.call("loadOk", name=name) for name in ("all", "solo")}
        for name in ("all", "solo"):
            await until(lambda n=name: _ok_at_least(agent, n, ok_at_kill[n] + 50), f"the {name} load going on after the kill")
        # subscriptions restored: publishes made after the move reach the handler, on either surviving node
        await py_on_a.publish("jobs.2", "after, from a")
        await py_on_c.publish("jobs.3", "after, from c")
        await agent.wait_event("message", lambda e: e["payload"] == "after, from a")
        await agent.wait_event("message", lambda e: e["payload"] == "after, from c")

        singles = await until(lambda: _all_settled(agent, 60), "the 60 held requests settled")
        assert singles["settledTwice"] == 0
        lost = [r for r in singles["records"] if r["code"] == "responder_lost"]
        answered = [r for r in singles["records"] if r["ok"]]
        assert len(lost) + len(answered) == 60, [r for r in singles["records"] if not r["ok"] and r["code"] != "responder_lost"]
        assert lost and answered
        in_flight = list(singles["records"])  # all 60 were held at the kill
        for name in ("all", "solo"):
            load = await agent.call("stopLoad", name=name)
            records = load["records"]
            assert load["settled"] == load["started"] and load["settledTwice"] == 0, name
            # each node serves "all" locally and c serves "solo": a call through b that lost its connection is
            # tried again on a or c (docs/resilience.md §8), so every call ends in its echo
            assert all(r["ok"] for r in records), (name, [r for r in records if not r["ok"]][:5])
            in_flight += [r for r in records if r["start"] <= killed_at < r["end"]]
        # every call in flight at the kill settled within 2 s of it, not at its own 30 s deadline
        slowest = max(after_kill_ms(r, killed_at) for r in in_flight)
        assert slowest < SETTLE_MS, (slowest, sorted(in_flight, key=lambda r: -after_kill_ms(r, killed_at))[:3])
        assert await agent.call("request", channel="all.echo", payload="later", timeoutMs=5000) == "later"
        assert await agent.call("request", channel="solo.echo", payload="later", timeoutMs=5000) == "later"
    finally:
        await responder.close()


async def _ok_at_least(agent: NodeAgent, name: str, count: int) -> bool:
    return int(await agent.call("loadOk", name=name)) >= count


async def _all_settled(agent: NodeAgent, count: int) -> Any:
    singles = await agent.call("singles")
    return singles if singles["settled"] == count else None
