"""The Node client's resilience (docs/resilience.md §2-6) against the real
Python server, through the fault-injection proxy of tests/faultproxy.py:
a black hole is noticed within interval + timeout; calls made during an
outage wait in the offline queue and are delivered once the server is back;
no call waits past its deadline and every one settles exactly once;
reconnection restores subscriptions and responders before the queue is
replayed; persisted messages outlive the process that queued them; the
circuit breaker fails fast and recovers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from conftest import WAIT_S
from tests.faultproxy import FaultProxy

FAST = {"initialDelay": 50, "maxDelay": 200, "jitter": 0}
SLACK_S = 0.35  # scheduling slack on a loaded machine


@pytest.fixture
async def fault_proxy() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await fault_proxy(upstream_port)``; closed on teardown."""
    proxies: list[FaultProxy] = []

    async def make(port: int) -> FaultProxy:
        proxy = await FaultProxy("127.0.0.1", port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


def position(agent: Any, name: str) -> int:
    """Index of the last event called ``name`` in the agent's log."""
    return max(i for i, e in enumerate(agent.events) if e["event"] == name)


async def go_offline(agent: Any, proxy: FaultProxy) -> None:
    """Cut the agent off and keep it off (the proxy refuses new connections);
    returns once the client knows it is offline."""
    proxy.refuse(True)
    proxy.cut()
    deadline = time.monotonic() + WAIT_S
    while (await agent.call("info"))["state"] != "reconnecting":
        assert time.monotonic() < deadline, "the client did not notice the cut"
        await asyncio.sleep(0.01)


async def test_black_hole_is_detected_within_interval_plus_timeout(handler_server, node_agent, fault_proxy):
    proxy = await fault_proxy(handler_server.port)
    agent = await node_agent(proxy.port, heartbeatInterval=200, heartbeatTimeout=400, connectTimeout=300, **FAST)
    beat = await agent.wait_event("heartbeat")
    assert 0 <= beat["detail"]["latency"] < 200
    health = await agent.call("connectionHealth")
    assert health["healthy"] is True
    assert (health["heartbeatIntervalMs"], health["heartbeatTimeoutMs"]) == (200, 400)

    await agent.call("startRequest", channel="py.slow", payload=5, timeoutMs=20000, tag="inflight")
    proxy.blackhole(True)
    started = time.monotonic()
    # A call made into the black hole ends by its own deadline, not later.
    await agent.call("startRequest", channel="py.echo", payload=1, timeoutMs=250, tag="short")
    silent = await agent.wait_event("heartbeat_timeout")
    detected = time.monotonic() - started
    assert silent["detail"]["silent"] >= 400
    assert detected <= 0.2 + 0.4 + SLACK_S, detected
    lost = await agent.wait_event("disconnected")
    assert (lost["detail"]["error"]["code"], lost["detail"]["error"]["cause"]) == ("connection_lost", "timeout")
    done = {e["tag"]: e for e in await agent.wait_events("requestDone", 2)}
    assert done["inflight"]["error"]["code"] == "connection_lost"
    short = done["short"]
    assert short["ok"] is False and short["error"]["code"] in ("timeout", "connection_lost")
    assert short["elapsedMs"] <= 250 + SLACK_S * 1000

    proxy.blackhole(False)
    await agent.wait_event("reconnected", timeout=WAIT_S)
    assert (await agent.call("request", channel="py.echo", payload="back"))["payload"] == "back"


async def test_requests_queued_while_the_server_is_down_are_delivered_when_it_restarts(start_server, node_agent):
    srv = await start_server(handlers=True)
    port = srv.port
    agent = await node_agent(port, **FAST)
    await srv.kill()
    await agent.wait_event("reconnecting")
    down = time.monotonic()
    for i in range(10):
        await agent.call("startRequest", channel="py.echo", payload=i, timeoutMs=15000, tag=f"q{i}", priority=i % 3)
    await agent.call("startRequest", channel="py.meta", timeoutMs=15000, tag="meta")
    stats = await agent.call("queueStats")
    assert stats["size"] == 11
    assert stats["byPriority"] == {"0": 5, "1": 3, "2": 3}
    await agent.wait_event("reconnecting")  # at least one more failed attempt

    await start_server(handlers=True, port=port)
    await agent.wait_event("reconnected", timeout=WAIT_S)
    outage_ms = (time.monotonic() - down) * 1000
    done = {e["tag"]: e for e in await agent.wait_events("requestDone", 11)}
    for i in range(10):
        assert (done[f"q{i}"]["ok"], done[f"q{i}"]["payload"]) == (True, i)
    # The responder saw what was left of the deadline, not the full 15 s.
    assert done["meta"]["payload"]["timeout_ms"] <= 15000 - outage_ms + 50
    assert agent.count("requestDone") == 11  # each settled exactly once
    metrics = await agent.call("metrics")
    assert metrics["reconnections"] == 1
    assert metrics["queued"] == 0
    assert metrics["messagesDelivered"] == 11


async def test_a_queued_request_expires_at_its_deadline_while_the_others_wait(handler_server, node_agent, fault_proxy):
    proxy = await fault_proxy(handler_server.port)
    agent = await node_agent(proxy.port, **FAST)
    await go_offline(agent, proxy)
    await agent.call("notify", channel="py.echo", payload="late", timeoutMs=150)
    await agent.call("startRequest", channel="py.echo", payload="short", timeoutMs=300, tag="short")
    await agent.call("startRequest", channel="py.echo", payload="long", timeoutMs=10000, tag="long")
    short = await agent.wait_event("requestDone", lambda e: e["tag"] == "short")
    assert short["error"]["code"] == "timeout"
    assert 300 <= short["elapsedMs"] <= 300 + SLACK_S * 1000
    dropped = await agent.wait_event("queue_dropped")
    assert dropped["detail"] == {"reason": "expired", "channel": "py.echo", "messageType": "notification", "priority": 0}
    assert (await agent.call("queueStats"))["size"] == 1

    proxy.refuse(False)
    long = await agent.wait_event("requestDone", lambda e: e["tag"] == "long")
    assert (long["ok"], long["payload"]) == (True, "long")
    # onDisconnect 'fail' never waits.
    await go_offline(agent, proxy)
    err = await agent.call_error("request", channel="py.echo", payload=1, timeoutMs=5000, onDisconnect="fail")
    assert err["code"] == "not_connected"


async def test_reconnection_restores_subscriptions_and_responders_before_replaying(
    handler_server, node_agent, py_client, fault_proxy
):
    proxy = await fault_proxy(handler_server.port)
    agent = await node_agent(proxy.port, **FAST)
    await agent.call("subscribe", channel="news.>")
    await agent.call("serve", channel="node.echo", kind="echo")
    py = await py_client(handler_server.port)
    await go_offline(agent, proxy)
    await agent.call("publish", channel="queued.note", payload="while down")
    await agent.call("startRequest", channel="py.echo", payload="queued", timeoutMs=10000, tag="queued")
    proxy.refuse(False)
    await agent.wait_event("reconnected")
    done = await agent.wait_event("requestDone", lambda e: e["tag"] == "queued")
    assert (done["ok"], done["payload"]) == (True, "queued")
    assert position(agent, "reconnected") < position(agent, "connected") < position(agent, "requestDone")

    assert await py.publish("news.today", {"headline": "back"}, ack=True) == 1
    got = await agent.wait_event("message", lambda e: e["channel"] == "news.today")
    assert got["payload"] == {"headline": "back"}
    assert (await py.send_request("node.echo", "again", timeout=WAIT_S)).payload == "again"
    info = await agent.call("info")
    assert info["subscriptions"] == ["news.>"] and info["responders"] == ["node.echo"]


async def test_every_call_settles_exactly_once_and_never_past_its_deadline(handler_server, node_agent, fault_proxy):
    proxy = await fault_proxy(handler_server.port)
    agent = await node_agent(proxy.port, **FAST)
    count = 60
    for i in range(count):
        channel = "py.slow" if i % 4 == 0 else "py.echo"
        payload = 0.05 if channel == "py.slow" else i
        await agent.call("startRequest", channel=channel, payload=payload, timeoutMs=200 + (i % 5) * 150, tag=f"c{i}")
        if i % 15 == 7:
            proxy.cut()
    events = await agent.wait_events("requestDone", count, timeout=WAIT_S)
    tags = [e["tag"] for e in events]
    assert sorted(tags) == sorted(f"c{i}" for i in range(count))  # each once
    for e in events:
        i = int(e["tag"][1:])
        assert e["elapsedMs"] <= 200 + (i % 5) * 150 + SLACK_S * 1000, e
        if not e["ok"]:
            assert e["error"]["code"] in ("connection_lost", "timeout"), e
    assert any(e["ok"] for e in events)
    await agent.call("info")  # the agent answers in order: anything pending would be out by now
    assert agent.count("requestDone") == count


async def test_persisted_messages_reach_the_server_from_the_next_process(handler_server, node_agent, py_client, fault_proxy, tmp_path):
    queue_path = str(tmp_path / "outbox.bin")
    proxy = await fault_proxy(handler_server.port)
    first = await node_agent(proxy.port, queuePath=queue_path, **FAST)
    await go_offline(first, proxy)
    for i in range(4):
        await first.call("publish", channel="persist.x", payload=i, priority=i % 2, timeoutMs=30000)
    await first.call("disconnect")
    await first.close()  # the process is gone

    py = await py_client(handler_server.port)
    got: list[Any] = []
    await py.subscribe("persist.>", lambda msg: got.append(msg.payload))
    second = await node_agent(handler_server.port, queuePath=queue_path, connect=False, **FAST)
    assert (await second.call("queueStats"))["size"] == 4
    await second.call("connect")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while len(got) < 4 and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert got == [1, 3, 0, 2]  # priority order, FIFO within a priority
    assert (await second.call("queueStats"))["size"] == 0


async def test_circuit_breaker_fails_fast_then_recovers(handler_server, node_agent):
    breaker = {"failureThreshold": 2, "resetTimeout": 300, "successThreshold": 1}
    agent = await node_agent(handler_server.port, circuitBreaker=breaker, **FAST)
    for _ in range(2):
        err = await agent.call_error("request", channel="nobody.home", payload=1, timeoutMs=2000)
        assert err["code"] == "no_responders"
    opened = await agent.wait_event("circuit_open")
    assert opened["detail"]["key"] == "nobody.home"
    started = time.monotonic()
    err = await agent.call_error("request", channel="nobody.home", payload=1, timeoutMs=2000)
    assert err["code"] == "circuit_open"
    assert time.monotonic() - started < 1.5  # failed fast (a round trip would have answered no_responders)
    assert (await agent.call("breakers"))["nobody.home"]["state"] == "open"
    # Other channels have their own breaker.
    assert (await agent.call("request", channel="py.echo", payload=1))["payload"] == 1

    responder = await node_agent(handler_server.port, **FAST)
    await responder.call("serve", channel="nobody.home", kind="echo")
    await asyncio.sleep(0.3)  # the breaker's reset timeout
    assert (await agent.call("request", channel="nobody.home", payload="up"))["payload"] == "up"
    await agent.wait_event("circuit_half_open")
    await agent.wait_event("circuit_closed")
    snapshot = (await agent.call("breakers"))["nobody.home"]
    assert (snapshot["state"], snapshot["rejected"]) == ("closed", 1)
