"""The bound on inbound work held for a handler slot (``maxHeldMessages`` /
``max_held_messages``) in the Node client, against the real server: past it
a new publish is dropped, counted (``heldDropped``) and reported once per
overflow episode as a ``SlowConsumerError`` on 'error', and a new served
request is answered ``limit_exceeded`` at once, which a requester in either
language gets as its typed error. tests/test_held_bound.py is the Python
client's own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_protocol import LimitExceeded, Message

from conftest import WAIT_S


async def until(pred: Callable[[], Awaitable[bool] | bool], timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while True:
            got = pred()
            if await got if asyncio.iscoroutine(got) else got:
                return
            await asyncio.sleep(0.01)


async def overflow(agent: Any, pub: Any, channel: str, count: int) -> None:
    """``count`` acked publishes, then a ping: once it answers, the agent read them all."""
    await agent.call("subscribeGated", channel=channel)
    for i in range(count):
        await pub.publish(channel, i, ack=True)
    await agent.call("system", action="ping")


async def test_node_drops_publishes_over_the_bound_and_reports_each_episode_once(server: Any, node_agent: Any, py_client: Any) -> None:
    sub = await node_agent(server.port, maxConcurrentHandlers=1, maxHeldMessages=8)
    pub = await py_client(server.port)
    await overflow(sub, pub, "held.x", 50)
    info = await sub.call("info")
    assert (info["runningHandlers"], info["heldMessages"]) == (1, 8)  # was (1, 49): no bound
    assert (await sub.call("metrics"))["heldDropped"] == 41
    error = (await sub.wait_event("error"))["error"]
    assert (error["code"], error["name"]) == ("slow_consumer", "SlowConsumerError")
    assert error["details"] == {"channel": "held.x", "max_held_messages": 8, "dropped": 1}
    assert sub.count("error") == 1
    await sub.call("openGate", channel="held.x")
    handled = [e["payload"] for e in await sub.wait_events("message", 9)]
    assert handled == list(range(9))  # the 8 held ran, in order; the 41 dropped never did

    await overflow(sub, pub, "held.y", 50)  # the first episode drained: a new one is reported
    error = (await sub.wait_event("error"))["error"]
    assert error["details"] == {"channel": "held.y", "max_held_messages": 8, "dropped": 42}
    assert (await sub.call("metrics"))["heldDropped"] == 82
    await sub.call("openGate", channel="held.y")
    assert [e["payload"] for e in await sub.wait_events("message", 9)] == list(range(9))
    assert sub.count("error") == 2


async def test_a_node_responder_over_the_bound_answers_a_python_requester_limit_exceeded(server: Any, node_agent: Any, py_client: Any) -> None:
    responder = await node_agent(server.port, maxConcurrentHandlers=1, maxHeldMessages=2)
    await responder.call("serve", channel="svc.gated", kind="gated")
    requester = await py_client(server.port)
    first = [asyncio.ensure_future(requester.request("svc.gated", i, timeout=WAIT_S)) for i in range(3)]

    async def two_held() -> bool:
        return (await responder.call("info"))["heldMessages"] == 2

    await until(two_held)
    with pytest.raises(LimitExceeded) as refused:
        await requester.request("svc.gated", 3, timeout=WAIT_S)  # was: RequestTimeout after WAIT_S
    assert refused.value.details == {"max_held_messages": 2}
    assert (await responder.call("metrics"))["heldDropped"] == 1
    await responder.call("openGate", channel="svc.gated")
    assert await asyncio.wait_for(asyncio.gather(*first), WAIT_S) == [0, 1, 2]
    assert responder.count("error") == 0


async def test_a_python_responder_over_the_bound_answers_a_node_requester_limit_exceeded(server: Any, node_agent: Any, py_client: Any) -> None:
    responder = await py_client(server.port, max_concurrent_handlers=1, max_held_messages=2)
    release = asyncio.Event()

    async def gated(msg: Message) -> Any:
        await release.wait()
        return msg.payload

    await responder.serve("svc.py", gated)
    requester = await node_agent(server.port)
    for i in range(3):
        await requester.call("startRequest", channel="svc.py", payload=i, timeoutMs=WAIT_S * 1000, tag=i)
    await until(lambda: len(responder._admission.held) == 2)
    error = await requester.call_error("request", channel="svc.py", payload=3, timeoutMs=WAIT_S * 1000)
    assert (error["code"], error["name"]) == ("limit_exceeded", "LimitExceededError")
    assert error["details"] == {"max_held_messages": 2}
    release.set()
    done = await requester.wait_events("requestDone", 3)
    assert sorted(e["payload"] for e in done) == [0, 1, 2] and all(e["ok"] for e in done)
