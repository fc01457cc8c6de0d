"""The server's limits (docs/protocol.md §12) as the Node client meets them,
against the real server in its own process: a refusal at max_connections is
TooManyConnectionsError from connect() and retried with backoff."""

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

