"""Reconnection of the Node client against the real server (docs/protocol.md
§6.2, §9, §13): the server is killed and restarted on the same port; in-flight
requests settle at once with connection_lost; calls made meanwhile wait for
the reconnection or their own deadline; subscriptions and responders come
back with no application code."""

from __future__ import annotations

import asyncio
import signal

from conftest import WAIT_S

FAST = {"initialDelay": 50, "maxDelay": 200}


async def test_server_restart_on_the_same_port(start_server, node_agent, py_client):
    srv = await start_server(handlers=True)
    port = srv.port
    responder = await node_agent(port, **FAST)
    requester = await node_agent(port, **FAST)
    await responder.call("serve", channel="node.echo", kind="echo")
    await responder.call("serve", channel="node.hang", kind="hang")
    await responder.call("subscribe", channel="news.>")

    # A request in flight when the server dies.
    await requester.call("startRequest", channel="node.hang", payload=1, timeoutMs=30000, tag="inflight")
    await responder.wait_event("served", lambda e: e["channel"] == "node.hang")
    await srv.kill()
    done = await requester.wait_event("requestDone", lambda e: e["tag"] == "inflight")
    assert done["ok"] is False
    assert done["error"]["code"] == "connection_lost"
    assert done["elapsedMs"] < 5000  # at once, not at its 30 s timeout
    for agent in (responder, requester):
        await agent.wait_event("disconnected")
        await agent.wait_event("reconnecting")

    # A call made while the server is down waits for the reconnection.
    await requester.call("startRequest", channel="py.echo", payload="queued", timeoutMs=15000, tag="during")
    assert (await requester.call("info"))["state"] == "reconnecting"

    await start_server(handlers=True, port=port)
    for agent in (responder, requester):
        await agent.wait_event("reconnected", timeout=WAIT_S)
    during = await requester.wait_event("requestDone", lambda e: e["tag"] == "during")
    assert (during["ok"], during["payload"]) == (True, "queued")

    # The responder and the subscription were restored with no application code.
    py = await py_client(port)
    assert (await py.send_request("node.echo", "again", timeout=WAIT_S)).payload == "again"
    assert (await requester.call("request", channel="node.echo", payload="n2n"))["payload"] == "n2n"
    assert await py.publish("news.today", {"headline": "back"}, ack=True) == 1
    got = await responder.wait_event("message")
    assert got["payload"] == {"headline": "back"}
    info = await responder.call("info")
    assert info["subscriptions"] == ["news.>"]
    assert sorted(info["responders"]) == ["node.echo", "node.hang"]


async def test_calls_while_the_server_is_down_time_out_on_their_own_deadline(server, node_agent):
    agent = await node_agent(server.port, **FAST)
    await server.kill()
    await agent.wait_event("reconnecting")
    err = await agent.call_error("request", channel="a.b", payload=1, timeoutMs=300)
    assert err["code"] == "timeout"
    # disconnect() while reconnecting: later calls are not_connected.
    await agent.call("disconnect")
    err = await agent.call_error("request", channel="a.b", payload=1)
    assert err["code"] == "not_connected"


async def test_reconnect_attempts_are_bounded(server, node_agent):
    agent = await node_agent(server.port, maxRetries=2, **FAST)
    await server.kill()
    await agent.wait_event("close", timeout=WAIT_S)
    ev = await agent.wait_event("error")
    assert ev["error"]["code"] == "connection_lost"
    assert agent.count("reconnecting") == 2
    assert (await agent.call("info"))["state"] == "disconnected"


async def test_reconnection_refused_as_unauthorized_gives_up(start_server, node_agent):
    srv = await start_server("--token", "first")
    port = srv.port
    agent = await node_agent(port, token="first", maxRetries=1000, **FAST)
    await srv.kill()
    await agent.wait_event("reconnecting")
    await start_server("--token", "second", port=port)  # the old token is refused now
    await agent.wait_event("close", timeout=WAIT_S)
    ev = await agent.wait_event("error", lambda e: e["error"]["cause"] == "unauthorized")
    assert ev["error"]["code"] == "connection_lost"
    assert agent.count("reconnected") == 0
    assert (await agent.call("info"))["state"] == "disconnected"
    err = await agent.call_error("request", channel="a.b", payload=1)
    assert err["code"] == "not_connected"


async def test_graceful_shutdown_answers_shutting_down_then_node_reconnects(start_server, node_agent):
    srv = await start_server(handlers=True)
    agent = await node_agent(srv.port, **FAST)
    await agent.call("startRequest", channel="py.slow", payload=10, timeoutMs=20000, tag="slow")
    # Make sure the server holds the request before it is asked to stop.
    assert (await agent.call("request", channel="py.echo", payload="sync"))["payload"] == "sync"
    srv.signal(signal.SIGTERM)
    done = await agent.wait_event("requestDone", lambda e: e["tag"] == "slow")
    assert done["error"]["code"] == "shutting_down"
    await agent.wait_event("disconnected")
    await asyncio.wait_for(srv.proc.wait(), WAIT_S)
    restarted = await start_server(handlers=True, port=srv.port)
    await agent.wait_event("reconnected")
    assert (await agent.call("request", channel="py.echo", payload="ok"))["payload"] == "ok"
    assert restarted.port == srv.port


async def test_registrations_withdrawn_while_reconnecting_are_not_made_when_the_server_is_back(start_server, node_agent, py_client):
    """serve()/subscribe() while the server is down, then unserve()/unsubscribe()
    before it is back: the waiting calls resolve at once, and the restarted
    server holds neither (its requests are not sent to a client without a
    handler, its publishes are not counted for a subscription nobody has)."""
    srv = await start_server()
    port = srv.port
    agent = await node_agent(port, **FAST)
    await srv.kill()
    await agent.wait_event("reconnecting")
    await agent.call("startServe", channel="jobs.run", kind="echo")
    await agent.call("startSubscribe", channel="ghost.x")
    await agent.call("unserve", channel="jobs.run")
    await agent.call("unsubscribe", channel="ghost.x")
    done = await agent.wait_events("registrationDone", 2)  # before the server is back
    assert [(e["channel"], e["ok"]) for e in done] == [("jobs.run", True), ("ghost.x", True)]

    await start_server(port=port)
    await agent.wait_event("reconnected", timeout=WAIT_S)
    await agent.call("subscribe", channel="marker")  # on the server after anything sent before it
    caller = await py_client(port)
    assert (await caller.system("services"))["services"].get("jobs.run", 0) == 0
    assert await caller.publish("ghost.x", 1, ack=True) == 0
    assert await caller.publish("marker", 1, ack=True) == 1
    assert (await agent.call("info"))["responders"] == []
