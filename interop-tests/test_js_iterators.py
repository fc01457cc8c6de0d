"""Across languages, against ``python -m ipc_server``: Node iterating what
Python publishes and Python's requests (client.subscription(),
client.requests(): node/iterator_agent.js), Python's requests iterator
answering Node, and Node's coalesced and cached calls answered by a Python
responder that counts them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from conftest import WAIT_S, NodeAgent
from ipc_protocol import HandlerError, LimitExceeded, Message, NoResponders, ResponderLost


@pytest.fixture
async def iterator_agent(node: str) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await iterator_agent(port, **js_client_options)``: a connected node/iterator_agent.js."""
    agents: list[NodeAgent] = []

    async def make(port: int, **options: Any) -> NodeAgent:
        agent = await NodeAgent.start(node, port, script="iterator_agent.js", **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.close()


async def until(pred: Callable[[], Any], timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while not await pred():
            await asyncio.sleep(0.01)


async def test_node_iterates_python_publications_and_break_unsubscribes(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    agent = await iterator_agent(server.port)
    await agent.call("subscription", loop="orders", channel="orders.*", stopAfter=5)
    for i in range(5):
        assert await py.publish(f"orders.{i}", {"i": i}, ack=True) == 1
    items = await agent.wait_events("item", 5)
    assert [(e["channel"], e["payload"]) for e in items] == [(f"orders.{i}", {"i": i}) for i in range(5)]
    assert (await agent.wait_event("loopEnd"))["error"] is None

    async def unsubscribed() -> bool:
        return await py.publish("orders.x", 1, ack=True) == 0

    await until(unsubscribed)


async def test_node_drops_the_oldest_of_a_python_burst_and_counts_it(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    agent = await iterator_agent(server.port)
    await agent.call("subscription", loop="feed", channel="feed", maxBuffered=3, paused=True)
    for i in range(10):
        await py.publish("feed", i, ack=True)

    async def all_arrived() -> bool:
        return (await agent.call("metrics"))["iteratorDropped"] == 7

    await until(all_arrived)
    assert await agent.call("drain", loop="feed") == {"items": [7, 8, 9], "dropped": 7}
    error = (await agent.wait_event("error"))["error"]
    assert error["code"] == "slow_consumer" and error["details"] == {"channel": "feed", "max_buffered": 3, "overflow": "drop_oldest", "dropped": 1}


async def test_node_overflow_error_ends_its_loop_with_slow_consumer(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    agent = await iterator_agent(server.port)
    await agent.call("subscription", loop="feed", channel="feed", maxBuffered=2, overflow="error", paused=True)
    for i in range(3):
        await py.publish("feed", i, ack=True)

    async def unsubscribed() -> bool:
        return await py.publish("feed", "x", ack=True) == 0

    await until(unsubscribed)  # the third one ended it: the Node client unsubscribed
    assert (await agent.call("drain", loop="feed"))["items"] == [0, 1]


async def test_node_answers_python_requests_from_its_loop(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    agent = await iterator_agent(server.port)
    await agent.call("requests", loop="jobs", channel="jobs.*", mode="echo", stopAfter=2)
    assert await py.request("jobs.a", {"n": 1}) == {"echo": {"n": 1}, "channel": "jobs.a", "by": "node"}
    assert await py.request("jobs.b", [2]) == {"echo": [2], "channel": "jobs.b", "by": "node"}
    assert (await agent.wait_event("loopEnd"))["error"] is None
    with pytest.raises(NoResponders):  # leaving the loop unserved the channel
        await py.request("jobs.c", 3)


async def test_node_loop_failures_and_what_it_left_reach_python_typed(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    agent = await iterator_agent(server.port)
    await agent.call("requests", loop="bad", channel="bad", mode="fail")
    with pytest.raises(HandlerError) as info:
        await py.request("bad", 1)
    assert info.value.remote_type == "RangeError"

    await agent.call("requests", loop="held", channel="held", maxBuffered=2, paused=True)
    calls = [asyncio.create_task(py.request("held", i)) for i in range(3)]
    dropped = (await asyncio.gather(*calls[:1], return_exceptions=True))[0]
    assert isinstance(dropped, LimitExceeded) and dropped.details == {"channel": "held", "max_buffered": 2, "overflow": "drop_oldest"}
    await agent.call("close", loop="held")
    for call in calls[1:]:
        with pytest.raises(ResponderLost):
            await asyncio.wait_for(call, WAIT_S)


async def test_a_python_requests_loop_answers_node(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    agent = await iterator_agent(server.port)
    async with py.requests("py.jobs") as loop:

        async def serve() -> None:
            async for req in loop:
                await req.respond({"sum": sum(req.payload), "by": "python"})

        task = asyncio.create_task(serve())
        assert await agent.call("request", channel="py.jobs", payload=[1, 2, 3]) == {"sum": 6, "by": "python"}
        task.cancel()


class Gate:
    """A Python responder that counts its calls and holds them until opened."""

    def __init__(self) -> None:
        self.calls = 0
        self.opened = asyncio.Event()

    async def __call__(self, msg: Message) -> Any:
        self.calls += 1
        await self.opened.wait()
        return {"n": self.calls, "echo": msg.payload}


async def test_node_coalesces_identical_calls_to_a_python_responder(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    gate = Gate()
    await py.serve("prices", gate)
    agent = await iterator_agent(server.port)
    await agent.call("startRequests", channel="prices", payload={"sku": "A", "qty": 1}, coalesce=True, count=4, tag="c")

    async def coalesced() -> bool:
        return (await agent.call("metrics"))["requestsCoalesced"] == 3

    await until(coalesced)
    gate.opened.set()
    done = await agent.wait_events("requestDone", 4)
    assert all(e["ok"] and e["payload"] == {"n": 1, "echo": {"sku": "A", "qty": 1}} for e in done)
    assert gate.calls == 1


async def test_node_caches_a_python_answer(server: Any, py_client: Any, iterator_agent: Any) -> None:
    py = await py_client(server.port)
    gate = Gate()
    gate.opened.set()
    await py.serve("prices", gate)
    agent = await iterator_agent(server.port, cacheMaxEntries=10)
    first = await agent.call("request", channel="prices", payload={"sku": "A"}, cacheTtl=60_000)
    assert await agent.call("request", channel="prices", payload={"sku": "A"}, cacheTtl=60_000) == first
    assert gate.calls == 1
    metrics = await agent.call("metrics")
    assert (metrics["cacheHits"], metrics["cacheMisses"], metrics["cacheSize"]) == (1, 1, 1)


async def test_a_python_caller_that_gives_up_aborts_what_the_node_loop_holds_or_buffers(
    server: Any, py_client: Any, iterator_agent: Any
) -> None:
    py = await py_client(server.port)
    agent = await iterator_agent(server.port)
    await agent.call("requests", loop="held", channel="held", mode="hold")
    call = asyncio.create_task(py.request("held", "x"))
    await agent.wait_event("item")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    async def aborted() -> bool:
        return bool((await agent.call("held", loop="held"))["aborted"])

    await until(aborted)  # the cancel frame reached the Node responder: req.signal aborted (protocol.md §15.4)
    assert await agent.call("respondHeld", loop="held") is False

    await agent.call("requests", loop="jobs", channel="jobs", paused=True)
    gone = asyncio.create_task(py.request("jobs", "gone"))

    async def buffered(n: int) -> bool:
        return bool(await agent.call("buffered", loop="jobs") == n)

    await until(lambda: buffered(1))
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    fresh = asyncio.create_task(py.request("jobs", "fresh"))  # after the cancel, on the same connection
    await until(lambda: buffered(2))
    assert (await agent.call("drain", loop="jobs", mode="echo"))["items"] == ["fresh"]
    assert (await fresh)["echo"] == "fresh"
