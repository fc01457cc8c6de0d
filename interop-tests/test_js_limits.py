"""The server's limits (docs/protocol.md §12) as the Node client meets them,
against the real server in its own process: a refusal at max_connections is
TooManyConnectionsError from connect() and retried with backoff; refused
subscriptions and registrations leave no local state; a declared
max_frame_size is sent in the connect and respected by the server."""

from __future__ import annotations

import asyncio

from conftest import WAIT_S

FAST = {"initialDelay": 20, "maxDelay": 50}


async def test_connect_refused_at_max_connections_is_too_many_connections(start_server, node_agent, py_client):
    srv = await start_server("--max-connections", "1")
    holder = await py_client(srv.port)
    agent = await node_agent(srv.port, connect=False, reconnect=False)
    for _ in range(20):  # however the refusal races the connect, it is read
        error = await agent.call_error("connect")
        assert (error["code"], error["name"]) == ("too_many_connections", "TooManyConnectionsError")
    await holder.disconnect()
    await agent.call("connect")
    assert await agent.call("healthCheck") is True


async def test_wait_on_first_connect_retries_a_full_server_with_backoff(start_server, node_agent, py_client):
    srv = await start_server("--max-connections", "1")
    holder = await py_client(srv.port)
    agent = await node_agent(srv.port, connect=False, waitOnFirstConnect=True, **FAST)
    await agent.call("startConnect")
    for _ in range(3):
        await agent.wait_event("reconnecting")
    assert agent.count("connectDone") == 0
    await holder.disconnect()
    done = await agent.wait_event("connectDone")
    assert done["ok"] is True


async def test_wait_on_first_connect_gives_up_with_the_refusal_as_cause(start_server, node_agent, py_client):
    srv = await start_server("--max-connections", "1")
    await py_client(srv.port)
    agent = await node_agent(srv.port, connect=False, waitOnFirstConnect=True, maxRetries=2, **FAST)
    error = await agent.call_error("connect")
    assert (error["code"], error["cause"]) == ("not_connected", "too_many_connections")


async def test_python_client_against_a_server_process_reads_the_refusal_every_time(start_server, py_client):
    from ipc_client import IPCClient
    from ipc_protocol import TooManyConnections

    srv = await start_server("--max-connections", "1")
    await py_client(srv.port)
    for _ in range(50):
        c = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
        try:
            await asyncio.wait_for(c.connect(), WAIT_S)
        except TooManyConnections:
            pass
        else:
            raise AssertionError("connected past max_connections")
        finally:
            await c.disconnect()


async def test_refused_subscriptions_and_registrations_leave_no_local_state(start_server, node_agent):
    srv = await start_server("--max-subscriptions-per-connection", "1", "--max-registrations-per-connection", "1")
    agent = await node_agent(srv.port)
    await agent.call("subscribe", channel="a")
    error = await agent.call_error("subscribe", channel="b")
    assert (error["code"], error["name"]) == ("limit_exceeded", "LimitExceededError")
    await agent.call("serve", channel="calc", kind="echo")
    assert (await agent.call_error("serve", channel="other", kind="echo"))["code"] == "limit_exceeded"
    # Refused, so not kept: trying again is refused by the server again, not already_serving.
    assert (await agent.call_error("serve", channel="other", kind="echo"))["code"] == "limit_exceeded"
    info = await agent.call("info")
    assert (info["subscriptions"], info["responders"]) == (["a"], ["calc"])
    assert await agent.call("healthCheck") is True
    stats = await agent.call("system", action="stats")
    assert (stats["subscriptions"], stats["registrations"], stats["errors"]["limit_exceeded"]) == (1, 1, 3)


async def test_a_node_clients_declared_frame_limit_is_respected(server, node_agent, py_client):
    node = await node_agent(server.port, maxFrameSize=2048)
    await node.call("subscribe", channel="news")
    py = await py_client(server.port)
    await py.serve("big", lambda m: "y" * 4000)
    assert await py.publish("news", {"n": 1, "blob": "x" * 4000}, ack=True) == 0  # skipped: over its limit
    assert await py.publish("news", {"n": 2}, ack=True) == 1
    assert (await node.wait_event("message"))["payload"] == {"n": 2}
    error = await node.call_error("request", channel="big", payload=None)
    assert error["code"] == "too_large"
    assert await node.call("healthCheck") is True
    assert node.count("disconnected") == 0  # never a frame it cannot read
    stats = await py.system("stats")
    assert stats["frames_skipped"] == 2
