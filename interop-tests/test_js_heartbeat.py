"""Heartbeats across languages (docs/protocol.md §9): the Node client pings
a silent server and declares it dead within its timeout, against a fake
peer that goes quiet after the handshake and against the real server
frozen with SIGSTOP; and the Python server's pings keep an idle Node
client's connection open."""

from __future__ import annotations

import signal
import time

from conftest import WAIT_S


async def test_node_notices_a_peer_that_goes_silent_after_the_handshake(fake_server, node_agent):
    fake = await fake_server(heartbeat_interval_ms=200, answer_pings=False)
    started = time.monotonic()
    agent = await node_agent(fake.port)
    info = await agent.call("info")
    # The server's advertised interval is used; the timeout is twice it.
    assert (info["heartbeatIntervalMs"], info["heartbeatTimeoutMs"]) == (200, 400)
    ping = await fake.wait_frame(lambda m: isinstance(m.payload, dict) and m.payload.get("action") == "ping")
    assert ping.channel_id == "system"
    ev = await agent.wait_event("disconnected")
    elapsed = time.monotonic() - started
    assert (ev["detail"]["error"]["code"], ev["detail"]["error"]["cause"]) == ("connection_lost", "timeout")  # the loss and why
    assert 0.35 < elapsed < 3.0, elapsed
    await agent.wait_event("reconnecting")


async def test_node_notices_a_stopped_server_and_recovers_when_it_continues(handler_server, node_agent):
    agent = await node_agent(handler_server.port, heartbeatInterval=200, heartbeatTimeout=500, initialDelay=50, maxDelay=200)
    await agent.call("startRequest", channel="py.slow", payload=3, timeoutMs=20000, tag="frozen")
    handler_server.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        ev = await agent.wait_event("disconnected")
        assert (ev["detail"]["error"]["code"], ev["detail"]["error"]["cause"]) == ("connection_lost", "timeout")
        assert time.monotonic() - started < 3.0
        # The in-flight request failed at once with connection_lost, not at its 20 s timeout.
        done = await agent.wait_event("requestDone")
        assert done["error"]["code"] == "connection_lost"
        assert done["elapsedMs"] < 5000
    finally:
        handler_server.signal(signal.SIGCONT)
    await agent.wait_event("reconnected", timeout=WAIT_S)
    assert (await agent.call("request", channel="py.echo", payload="back"))["payload"] == "back"


async def test_node_does_not_ping_a_server_with_heartbeats_off(start_server, node_agent):
    # The IPCServer with heartbeat_interval_s=0 advertises heartbeat_interval_ms 0.
    srv = await start_server("--heartbeat-interval", "0", handlers=True)
    agent = await node_agent(srv.port)
    info = await agent.call("info")
    assert (info["heartbeatIntervalMs"], info["heartbeatTimeoutMs"]) == (None, None)
    # An interval set in the options still applies.
    explicit = await node_agent(srv.port, heartbeatInterval=100)
    assert (await explicit.call("info"))["heartbeatIntervalMs"] == 100
    assert (await explicit.call("health"))["healthy"] is True


async def test_python_server_pings_keep_an_idle_node_client_connected(start_server, node_agent):
    srv = await start_server("--heartbeat-interval", "0.5")
    # The client's own interval is long, so only the server pings.
    agent = await node_agent(srv.port, heartbeatInterval=60000)
    # The server closes a client silent for twice its interval (1 s: a loaded
    # machine can stall a process for less); three pings span at least 1.5 s,
    # so the answered pings kept the client alive.
    await agent.wait_events("ping", 3)
    assert agent.count("disconnected") == 0
    assert (await agent.call("health"))["healthy"] is True


async def test_a_node_timeout_under_the_server_s_interval_pings_and_stays_connected(start_server, node_agent):
    # Before, heartbeatTimeout 500 with the server's 2 s never pinged and dropped the healthy connection at 2 s.
    srv = await start_server("--heartbeat-interval", "2")
    agent = await node_agent(srv.port, heartbeatTimeout=500)
    info = await agent.call("info")
    assert (info["heartbeatIntervalMs"], info["heartbeatTimeoutMs"]) == (250, 500)
    await agent.wait_events("heartbeat", 3, timeout=WAIT_S)  # three answered pings, under a third of the server's interval
    assert agent.count("heartbeat_timeout") == 0 and agent.count("disconnected") == 0
    assert (await agent.call("health"))["healthy"] is True
