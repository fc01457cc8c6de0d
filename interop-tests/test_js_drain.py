"""``drain()`` across languages against the real server (docs/resilience.md
§12): a draining responder finishes the request it holds while the server
sends the next ones to the other responder; a draining requester's call in
flight is answered while its new calls fail ``not_connected``."""

from __future__ import annotations

import asyncio

from conftest import WAIT_S


async def responders_of(client, channel: str) -> int:
    services = (await client.request("system", {"action": "services"}, timeout=WAIT_S))["services"]
    return services.get(channel, 0)


async def until(check) -> None:
    async with asyncio.timeout(WAIT_S):
        while not await check():
            await asyncio.sleep(0.02)


async def test_a_draining_node_responder_finishes_its_request_and_python_takes_the_next(server, node_agent, py_client):
    node = await node_agent(server.port)
    await node.call("serve", channel="work", kind="slow", delayMs=500)
    caller = await py_client(server.port)
    held = asyncio.ensure_future(caller.request("work", "first", timeout=WAIT_S))
    await node.wait_event("served", lambda e: e["channel"] == "work")
    python = await py_client(server.port)
    await python.serve("work", lambda m: "python")
    draining = asyncio.ensure_future(node.call("drain", timeoutMs=WAIT_S * 1000, timeout=WAIT_S * 2))

    async def unserved() -> bool:
        return await responders_of(caller, "work") == 1

    await until(unserved)
    assert [await caller.request("work", i, timeout=WAIT_S) for i in range(4)] == ["python"] * 4
    assert await asyncio.wait_for(held, WAIT_S) == "first"
    assert await draining is True
    assert (await node.call("info"))["state"] == "disconnected"


async def test_a_draining_node_requester_gets_its_answer_and_starts_nothing_new(server, node_agent, py_client):
    release, started = asyncio.Event(), asyncio.Event()
    python = await py_client(server.port)

    async def slow(msg):
        started.set()
        await release.wait()
        return f"answered {msg.payload}"

    await python.serve("slow", slow)
    node = await node_agent(server.port)
    await node.call("startRequest", channel="slow", payload=1, timeoutMs=WAIT_S * 1000, tag="inflight")
    await asyncio.wait_for(started.wait(), WAIT_S)  # the request reached the responder
    draining = asyncio.ensure_future(node.call("drain", timeoutMs=WAIT_S * 1000, timeout=WAIT_S * 2))
    await asyncio.sleep(0)  # the drain command is written first (the agent reads its lines in order)
    error = await node.call_error("request", channel="slow", payload=2)
    assert error["code"] == "not_connected"
    release.set()
    done = await node.wait_event("requestDone", lambda e: e["tag"] == "inflight")
    assert (done["ok"], done["payload"]) == (True, "answered 1")
    assert await draining is True


async def test_a_draining_python_responder_hands_over_to_node(server, node_agent, py_client):
    release, started = asyncio.Event(), asyncio.Event()
    python = await py_client(server.port)

    async def slow(msg):
        started.set()
        await release.wait()
        return "python"

    await python.serve("work", slow)
    requester = await node_agent(server.port)
    await requester.call("startRequest", channel="work", payload=0, timeoutMs=WAIT_S * 1000, tag="held")
    await asyncio.wait_for(started.wait(), WAIT_S)
    node = await node_agent(server.port)
    await node.call("serve", channel="work", kind="echo")
    draining = asyncio.ensure_future(python.drain(timeout=WAIT_S))

    async def unserved() -> bool:
        return "work" not in python.get_connection_info()["services"]

    await until(unserved)
    for i in range(1, 4):
        assert (await requester.call("request", channel="work", payload=i))["payload"] == i  # echoed by the Node responder
    release.set()
    done = await requester.wait_event("requestDone", lambda e: e["tag"] == "held")
    assert (done["ok"], done["payload"]) == (True, "python")
    assert await asyncio.wait_for(draining, WAIT_S) is True
