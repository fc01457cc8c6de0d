"""Pub/sub across languages through the real server (docs/protocol.md §4, §5):
`*` and `>` patterns on both sides, once-per-connection delivery, publish
acks, headers, app isolation, refusals, and `$sys.services` announcements."""

from __future__ import annotations

import asyncio

import pytest

from ipc_protocol.exceptions import Forbidden

from conftest import WAIT_S


async def _collector():
    """A Python subscription handler that records payloads and signals arrivals."""
    got: list = []
    arrived = asyncio.Event()

    def handler(msg):
        got.append((msg.channel_id, msg.payload))
        arrived.set()

    async def wait(n: int):
        async def until():
            while len(got) < n:
                arrived.clear()
                await arrived.wait()

        await asyncio.wait_for(until(), WAIT_S)
        return got

    return handler, wait


async def test_python_publish_matches_node_wildcards(server, node_agent, py_client):
    agent = await node_agent(server.port)
    for pattern in ("orders.*", "orders.>", "orders.eu.*", "sentinel"):
        await agent.call("subscribe", channel=pattern)
    py = await py_client(server.port)
    await py.publish("orders.eu.created", 1)
    await py.publish("orders.created", 2)
    await py.publish("orders", 3)  # matches neither orders.* nor orders.>
    await py.publish("sentinel", "end")
    await agent.wait_event("message", lambda m: m["sub"] == "sentinel")
    got = sorted((m["payload"], m["sub"]) for m in agent.events if m["event"] == "message" and m["sub"] != "sentinel")
    assert got == [(1, "orders.>"), (1, "orders.eu.*"), (2, "orders.*"), (2, "orders.>")]
    # One frame per connection: both handlers saw the same message.
    ids = {m["message_id"] for m in agent.events if m["event"] == "message" and m["payload"] == 1}
    assert len(ids) == 1


async def test_node_publish_with_ack_reaches_python_wildcards(server, node_agent, py_client):
    star_handler, star_wait = await _collector()
    tail_handler, tail_wait = await _collector()
    py1 = await py_client(server.port)
    py2 = await py_client(server.port)
    await py1.subscribe("ticks.*", star_handler)
    await py2.subscribe("ticks.>", tail_handler)
    agent = await node_agent(server.port)
    await agent.call("subscribe", channel="ticks.eu")
    res = await agent.call("publish", channel="ticks.eu", payload={"v": 1.5}, ack=True)
    assert res == {"delivered": 3}  # two Python connections and the publisher itself
    assert await star_wait(1) == [("ticks.eu", {"v": 1.5})]
    assert await tail_wait(1) == [("ticks.eu", {"v": 1.5})]
    own = await agent.wait_event("message")
    assert own["payload"] == {"v": 1.5}
    res = await agent.call("publish", channel="ticks.eu.paris", payload=2, ack=True)
    assert res == {"delivered": 1}  # only ticks.>
    assert (await tail_wait(2))[1] == ("ticks.eu.paris", 2)


async def test_publish_ack_counts_zero_without_subscribers(server, node_agent):
    agent = await node_agent(server.port)
    assert await agent.call("publish", channel="nobody.listens", payload=1, ack=True) == {"delivered": 0}


async def test_node_to_node_pubsub(server, node_agent):
    sub = await node_agent(server.port)
    pub = await node_agent(server.port)
    await sub.call("subscribe", channel="chat.>")
    await pub.call("publish", channel="chat.room.1", payload={"text": "hi ✨"})
    got = await sub.wait_event("message")
    assert (got["channel"], got["payload"]) == ("chat.room.1", {"text": "hi ✨"})


async def test_headers_are_relayed_python_to_node(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("subscribe", channel="traced")
    py = await py_client(server.port)
    await py.publish("traced", 1, headers={"trace-id": "abc", "ü": "✓"})
    got = await agent.wait_event("message")
    assert got["headers"].pop("traceparent").startswith("00-")  # docs/tracing.md
    assert got["headers"] == {"trace-id": "abc", "ü": "✓"}


async def test_node_unsubscribe_stops_delivery(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("subscribe", channel="temp.*")
    py = await py_client(server.port)
    assert await py.publish("temp.x", 1, ack=True) == 1
    await agent.wait_event("message")
    await agent.call("unsubscribe", channel="temp.*")
    assert await py.publish("temp.x", 2, ack=True) == 0


async def test_apps_are_isolated(server, node_agent, py_client):
    other = await node_agent(server.port, app_id="other-app")
    await other.call("subscribe", channel=">")
    py = await py_client(server.port, app_id="app")
    assert await py.publish("anything", 1, ack=True) == 0
    same = await py_client(server.port, app_id="other-app")
    assert await same.publish("anything", 2, ack=True) == 1
    assert (await other.wait_event("message"))["payload"] == 2


async def test_node_refuses_reserved_publish_locally(server, node_agent):
    # As the Python client does: ForbiddenError at once, with or without an
    # ack, and nothing is sent (§4.4), so no error frame comes back either.
    agent = await node_agent(server.port)
    for channel in ("$sys.services", "system.x", "system"):
        for ack in (True, False):
            err = await agent.call_error("publish", channel=channel, payload=1, ack=ack)
            assert (err["code"], err["name"]) == ("forbidden", "ForbiddenError"), (channel, ack)
    stats = (await agent.call("request", channel="system", payload={"action": "stats"}))["payload"]
    assert stats["errors"].get("forbidden", 0) == 0  # the server never saw them
    assert agent.count("error") == 0
    assert (await agent.call("health"))["healthy"] is True


async def test_python_client_refuses_reserved_publish_locally(server, py_client):
    py = await py_client(server.port)
    with pytest.raises(Forbidden):
        await py.publish("$sys.x", 1)


async def test_node_sees_responder_announcements_on_sys_services(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("subscribe", channel="$sys.services")
    py = await py_client(server.port)

    async def fn(msg):
        return None

    await py.serve("svc.lookup", fn)
    added = await agent.wait_event("message")
    assert added["payload"]["event"] == "added"
    assert added["payload"]["channel"] == "svc.lookup"
    assert added["payload"]["responders"] == 1
    await py.disconnect()
    removed = await agent.wait_event("message")
    assert (removed["payload"]["event"], removed["payload"]["responders"]) == ("removed", 0)
