"""The bound on inbound work held for a handler slot (``max_held_messages``):
past it a new publish is dropped, counted in ``held_dropped`` and reported
once per overflow episode as a ``SlowConsumer`` on ``error``; a new served
request is answered ``limit_exceeded`` at once and never runs. Real server
over loopback; interop-tests/test_js_held.py has the Node client's mirror
and the two clients as each other's requester."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import LimitExceeded, Message, SlowConsumer

from .conftest import WAIT_S
from .proxied import until
from .test_subscription_held import Busy, held_behind


async def test_publishes_over_the_bound_are_dropped_counted_and_reported_once_per_episode(make_client: Callable[..., Any]) -> None:
    pub, sub = await make_client(), await make_client(max_concurrent_handlers=1, max_held_messages=8)
    errors: list[BaseException] = []
    sub.on("error", errors.append)
    busy = Busy()
    await sub.subscribe("held.x", busy.handler)
    await held_behind(sub, pub, "held.x", 50)
    assert busy.calls == [0] and len(sub._admission.held) == 8  # 1 running, 8 held: was 49 held, no bound
    assert sub.metrics()["held_dropped"] == 41
    await until(lambda: len(errors) == 1)
    [error] = errors
    assert isinstance(error, SlowConsumer) and error.code == "slow_consumer"
    assert error.details == {"channel": "held.x", "max_held_messages": 8, "dropped": 1}
    busy.release.set()
    await until(lambda: len(busy.calls) == 9)
    assert busy.calls == list(range(9))  # the 8 held ran, in order; the 41 dropped never did

    again = Busy()  # a second overflow, once the first has drained: reported again
    await sub.subscribe("held.y", again.handler)
    await held_behind(sub, pub, "held.y", 50)
    await until(lambda: len(errors) == 2)
    assert errors[1].details == {"channel": "held.y", "max_held_messages": 8, "dropped": 42}  # type: ignore[attr-defined]
    assert sub.metrics()["held_dropped"] == 82
    again.release.set()
    await until(lambda: len(again.calls) == 9)
    assert len(errors) == 2


async def test_a_served_request_over_the_bound_is_answered_limit_exceeded_and_never_runs(make_client: Callable[..., Any]) -> None:
    requester, responder = await make_client(), await make_client(max_concurrent_handlers=1, max_held_messages=2)
    errors: list[BaseException] = []
    responder.on("error", errors.append)
    release = asyncio.Event()
    ran: list[Any] = []

    async def slow(msg: Message) -> Any:
        ran.append(msg.payload)
        await release.wait()
        return msg.payload

    await responder.serve("svc.slow", slow)
    first = [asyncio.ensure_future(requester.request("svc.slow", i, timeout=WAIT_S)) for i in range(3)]
    await until(lambda: len(responder._admission.held) == 2)  # 1 running, 2 held
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LimitExceeded) as refused:
        await requester.request("svc.slow", 3, timeout=WAIT_S)
    assert loop.time() - started < WAIT_S / 2  # at once: was a silent wait till its timeout
    assert refused.value.code == "limit_exceeded" and refused.value.details == {"max_held_messages": 2}
    assert responder.metrics()["held_dropped"] == 1
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*first), WAIT_S) == [0, 1, 2]
    assert ran == [0, 1, 2] and errors == []  # the refused one never ran; the requester was told, not 'error'


async def test_requests_held_from_a_lost_connection_stop_counting_against_the_bound(make_client: Callable[..., Any]) -> None:
    """The server answered them at the loss (responder_lost): they never run,
    and a request on the next connection is held, not refused (as Node's)."""
    requester = await make_client()
    responder = await make_client(max_concurrent_handlers=1, max_held_messages=3, initial_delay=0.05)
    release = asyncio.Event()
    ran: list[Any] = []

    async def slow(msg: Message) -> Any:
        ran.append(msg.payload)
        await release.wait()
        return msg.payload

    await responder.serve("svc.slow", slow)
    calls = [asyncio.ensure_future(requester.request("svc.slow", i, timeout=WAIT_S)) for i in range(4)]
    await until(lambda: len(responder._admission.held) == 3)  # 1 running, 3 held: the bound
    reconnected = asyncio.Event()
    responder.on("reconnected", lambda *_: reconnected.set())
    responder._link.conn.abort()  # the network drops it
    await asyncio.wait_for(reconnected.wait(), WAIT_S)
    assert len(responder._admission.held) == 0  # was 3: new requests refused limit_exceeded while the old handler ran
    new = asyncio.ensure_future(requester.request("svc.slow", "new", timeout=WAIT_S))
    await until(lambda: len(responder._admission.held) == 1)  # held for the slot, not refused
    release.set()
    assert await asyncio.wait_for(new, WAIT_S) == "new"
    assert ran == [0, "new"] and responder.metrics()["held_dropped"] == 0
    await asyncio.gather(*calls, return_exceptions=True)


def test_max_held_messages_is_checked_when_the_client_is_made() -> None:
    assert IPCClient("app").max_held_messages == 65536
    assert IPCClient("app", max_held_messages=math.inf).max_held_messages == math.inf
    assert IPCClient("app", max_held_messages=1).max_held_messages == 1
    for value, error in ((0, ValueError), (1.5, ValueError), (math.nan, ValueError), (-1, ValueError), ("8", TypeError), (True, TypeError), (None, TypeError)):
        with pytest.raises(error, match=r"^max_held_messages must be an integer >= 1 or math.inf, got "):
            IPCClient("app", max_held_messages=value)
