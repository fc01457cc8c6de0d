"""Publishes held for a handler slot (``max_concurrent_handlers`` full):
a held call starts only if its handler is still subscribed to a pattern
matching the channel, as the Node client matches at dispatch; held
publishes outlive a lost connection (they were delivered); and an
``unsubscribe()`` whose ack the lost connection took resolves, since the
server dropped the subscription with it. Real loopback TCP, through the
fault proxy where a connection must die (js-client/test/client_edges.test.js
has the Node mirror)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .proxied import proxy, state_event, until, via_proxy  # noqa: F401 - fixtures


class Busy:
    """An async handler that records each call and holds its slot until
    released: ``handler`` an ``async def`` function or an object with an
    async ``__call__`` (called as a plain function, its coroutine admitted)."""

    def __init__(self, kind: str = "function") -> None:
        self.calls: list[Any] = []
        self.release = asyncio.Event()
        self.handler: Callable[[Message], Any] = self.run if kind == "function" else self

    async def run(self, msg: Message) -> None:
        self.calls.append(msg.payload)
        await self.release.wait()

    async def __call__(self, msg: Message) -> None:
        await self.run(msg)


async def held_behind(sub: IPCClient, pub: IPCClient, channel: str, count: int) -> None:
    """Publish ``count`` messages and return once ``sub`` has read them all
    (a ping answered after them): the first runs, the rest are held."""
    for i in range(count):
        await pub.publish(channel, i, ack=True)
    await sub.system("ping", timeout=WAIT_S)


async def all_handled(sub: IPCClient, pub: IPCClient) -> None:
    """Until every publish held before now has been dispatched or skipped:
    a marker published now is held behind them, and runs after them."""
    done = asyncio.Event()

    async def marker(msg: Message) -> None:
        done.set()

    await sub.subscribe("marker.done", marker)
    await pub.publish("marker.done", None, ack=True)
    await asyncio.wait_for(done.wait(), WAIT_S)


@pytest.mark.parametrize("kind", ["function", "callable object"])
async def test_no_held_call_starts_after_unsubscribe_returns(make_client: Callable[..., Any], kind: str) -> None:
    pub, sub = await make_client(), await make_client(max_concurrent_handlers=1)
    busy = Busy(kind)
    await sub.subscribe("held.x", busy.handler)
    await held_behind(sub, pub, "held.x", 20)
    assert busy.calls == [0]
    await sub.unsubscribe("held.x", busy.handler)
    busy.release.set()
    await all_handled(sub, pub)
    assert busy.calls == [0]  # was 0..19: the 19 held calls ran after unsubscribe() returned


async def test_a_held_call_still_runs_for_a_pattern_that_still_matches(make_client: Callable[..., Any]) -> None:
    pub, sub = await make_client(), await make_client(max_concurrent_handlers=1)
    busy = Busy()
    await sub.subscribe("held.x", busy.handler)
    await sub.subscribe("held.*", busy.handler)  # one handler, two patterns: called once per message
    await held_behind(sub, pub, "held.x", 5)
    await sub.unsubscribe("held.x", busy.handler)
    busy.release.set()
    await all_handled(sub, pub)
    assert busy.calls == [0, 1, 2, 3, 4]


async def test_held_publishes_outlive_a_lost_connection(proxy: FaultProxy, via_proxy: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    pub, sub = await make_client(), await via_proxy(max_concurrent_handlers=1)
    busy = Busy()
    await sub.subscribe("held.x", busy.handler)
    await held_behind(sub, pub, "held.x", 5)
    reconnected = state_event(sub, "reconnected")
    proxy.cut()
    await asyncio.wait_for(reconnected.get(), WAIT_S)
    busy.release.set()
    await until(lambda: len(busy.calls) == 5)
    assert busy.calls == [0, 1, 2, 3, 4]  # delivered before the loss: handled after it, in order


async def test_unsubscribe_resolves_when_the_connection_dies_before_its_ack(
    proxy: FaultProxy, via_proxy: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    pub, sub = await make_client(), await via_proxy(heartbeat_interval=None)
    got: list[Any] = []
    await sub.subscribe("gone.x", got.append)
    await sub.serve("gone.y", lambda msg: 1)
    reconnected = state_event(sub, "reconnected")
    proxy.blackhole(True)
    leaving = asyncio.gather(sub.unsubscribe("gone.x"), sub.unserve("gone.y"))
    await until(lambda: len(sub._calls._pending) == 2)  # both frames out, their acks awaited
    proxy.cut()
    proxy.blackhole(False)
    assert await asyncio.wait_for(leaving, WAIT_S) == [None, None]  # raised ConnectionLost
    await asyncio.wait_for(reconnected.get(), WAIT_S)
    assert await pub.publish("gone.x", 1, ack=True) == 0  # not restored: gone either way
    assert sub.get_connection_info()["subscriptions"] == [] and sub.get_connection_info()["services"] == []
    assert got == []
