"""The Node client's connection lifecycle against the real server:
waitOnFirstConnect (a server that starts late), and healthCheck() as a
boolean once the server is gone or frozen (health() has the details)."""

from __future__ import annotations

import signal
import socket

from conftest import WAIT_S

FAST = {"initialDelay": 50, "maxDelay": 200, "jitter": 0}


def free_port() -> int:
    """A port nothing listens on (taken from the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_wait_on_first_connect_resolves_once_the_server_starts_late(start_server, node_agent, py_client):
    port = free_port()
    agent = await node_agent(port, connect=False, waitOnFirstConnect=True, **FAST)
    await agent.call("startConnect")
    first = await agent.wait_event("reconnecting")
    assert first["detail"]["attempt"] == 1
    await agent.wait_event("reconnecting")  # still trying, with backoff
    assert (await agent.call("info"))["state"] == "reconnecting"
    assert agent.count("connectDone") == 0
    await agent.call("startRequest", channel="py.echo", payload="early", timeoutMs=int(WAIT_S * 1000), tag="early")

    await start_server(handlers=True, port=port)
    done = await agent.wait_event("connectDone")
    assert (done["ok"], done["result"]) == (True, True)
    assert (await agent.call("info"))["state"] == "connected"
    early = await agent.wait_event("requestDone", lambda e: e["tag"] == "early")
    assert (early["ok"], early["payload"]) == (True, "early")  # queued while waiting, sent once connected
    assert agent.count("connected") == 1
    assert agent.count("reconnected") == 0  # a first connection is no reconnection
    assert (await agent.call("request", channel="py.echo", payload=1))["payload"] == 1


async def test_wait_on_first_connect_gives_up_after_max_retries(node_agent):
    agent = await node_agent(free_port(), connect=False, waitOnFirstConnect=True, maxRetries=2, **FAST)
    await agent.call("startConnect")
    done = await agent.wait_event("connectDone")
    assert done["ok"] is False
    assert (done["error"]["code"], done["error"]["name"]) == ("not_connected", "NotConnectedError")
    assert (await agent.wait_event("reconnect_failed"))["detail"] == 2
    assert agent.count("reconnecting") == 2
    assert (await agent.call("info"))["state"] == "disconnected"


async def test_health_check_is_false_once_the_server_is_killed(start_server, node_agent):
    srv = await start_server()
    agent = await node_agent(srv.port, **FAST)
    assert await agent.call("healthCheck") is True
    detail = await agent.call("health")
    assert detail["healthy"] is True and detail["latencyMs"] >= 0

    await srv.kill()
    await agent.wait_event("disconnected")
    assert await agent.call("healthCheck", timeoutMs=500) is False
    detail = await agent.call("health")
    assert detail["healthy"] is False and detail["error"] == "not_connected"


async def test_health_check_is_false_while_the_server_is_frozen(start_server, node_agent):
    srv = await start_server()
    agent = await node_agent(srv.port, heartbeatInterval=60_000, **FAST)  # the heartbeat stays out of it
    assert await agent.call("healthCheck") is True
    srv.signal(signal.SIGSTOP)
    try:
        assert await agent.call("healthCheck", timeoutMs=300) is False  # the ping goes unanswered
        detail = await agent.call("health", timeoutMs=300)
        assert (detail["healthy"], detail["state"], detail["error"]) == (False, "connected", "timeout")
    finally:
        srv.signal(signal.SIGCONT)
    assert await agent.call("healthCheck") is True


def order(agent, *names: str) -> list[str]:
    """The agent's events among ``names``, in the order it emitted them."""
    return [e["event"] for e in agent.events if e["event"] in names]


async def test_giving_up_reconnecting_is_reported_on_error_caused_by_the_last_attempt(start_server, node_agent):
    # The Python client's: tests/test_lifecycle_errors.py.
    srv = await start_server()
    agent = await node_agent(srv.port, maxRetries=3, **FAST)
    await srv.kill()
    await agent.wait_event("disconnected")
    await agent.call("startRequest", channel="jobs.run", payload=1, timeoutMs=int(WAIT_S * 1000), tag="queued")
    assert (await agent.wait_event("reconnect_failed"))["detail"] == 3
    error = (await agent.wait_event("error"))["error"]
    assert (error["code"], error["name"], error["message"]) == ("connection_lost", "ConnectionLostError", "gave up reconnecting after 3 attempts")
    assert error["cause"] == "not_connected"  # the last attempt's, as connect() rejects with it
    await agent.wait_event("close")
    assert order(agent, "reconnect_failed", "error", "close") == ["reconnect_failed", "error", "close"]
    done = (await agent.wait_event("requestDone"))["error"]
    assert (done["code"], done["message"], done["cause"]) == ("not_connected", "gave up reconnecting", "connection_lost")


async def test_a_heartbeat_timeout_is_reported_on_error(start_server, node_agent):
    srv = await start_server()
    agent = await node_agent(srv.port, heartbeatInterval=200, heartbeatTimeout=500, connectTimeout=500, **FAST)
    srv.signal(signal.SIGSTOP)  # the TCP connection stays open: a half-dead peer
    try:
        error = (await agent.wait_event("error"))["error"]
    finally:
        srv.signal(signal.SIGCONT)
    assert order(agent, "heartbeat_timeout", "disconnected", "error")[:3] == ["heartbeat_timeout", "disconnected", "error"]
    assert (error["code"], error["name"]) == ("timeout", "RequestTimeoutError")
    lost = next(e for e in agent.events if e["event"] == "disconnected")["detail"]["error"]  # as Python's ConnectionLost and its __cause__
    assert (lost["code"], lost["name"], lost["cause"]) == ("connection_lost", "ConnectionLostError", "timeout")
    assert error["message"].startswith("heartbeat timeout: nothing received for ") and error["message"].endswith(" ms")
