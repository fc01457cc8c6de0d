"""LoadBalancedClient.stream() over real servers on loopback (docs/protocol.md
§15, docs/resilience.md §8): the items in order from one server, failover
to the next healthy server only before the first item, the error to the
reader after it, close() during a stream, the deadline covering the
failovers, and the reader leaving early (the cancel reaches the producer,
the pooled connection is given back)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import IPCClient, LoadBalancedClient
from ipc_protocol import ConnectionLost, HandlerError, Message, NoResponders, NotConnected, RequestTimeout, ResponderLost
from ipc_server import IPCServer

from .conftest import WAIT_S, counting_until_closed
from .faultproxy import FaultProxy
from .test_pool import until


@pytest.fixture
async def servers() -> AsyncIterator[list[IPCServer]]:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as a, IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as b:
        yield [a, b]


@pytest.fixture
async def make_lb() -> AsyncIterator[Callable[..., Any]]:
    made: list[LoadBalancedClient] = []

    async def make(ports: list[int], **kwargs: Any) -> LoadBalancedClient:
        kwargs.setdefault("health_check_interval", None)
        lb = LoadBalancedClient("app", [("127.0.0.1", p) for p in ports], **kwargs)
        made.append(lb)
        await lb.start()
        return lb

    yield make
    for lb in made:
        await lb.close()


def named(name: str, started: list[str], gate: asyncio.Event | None = None) -> Callable[[Message], AsyncIterator[str]]:
    """A producer yielding ``name:0``, ``name:1``... up to ``n``; with a
    ``gate``, it waits for it after its first item."""

    async def produce(msg: Message) -> AsyncIterator[str]:
        started.append(name)
        for i in range(msg.payload["n"]):
            yield f"{name}:{i}"
            if gate is not None:
                await gate.wait()

    return produce


def in_use(lb: LoadBalancedClient) -> int:
    return sum(p.stats()["in_use"] for p in lb.pools().values())


async def test_items_come_in_order_from_one_server_counted_once(servers, make_lb) -> None:
    started: list[str] = []
    for name, srv in zip("ab", servers):
        srv.add_handler("ticks", named(name, started))
    lb = await make_lb([s.port for s in servers])
    first = [item async for item in lb.stream("ticks", {"n": 100}, window=8)]
    second = [item async for item in lb.stream("ticks", {"n": 3})]
    assert first == [f"a:{i}" for i in range(100)] and second == ["b:0", "b:1", "b:2"]  # round robin, one server each
    assert started == ["a", "b"]
    stats = lb.server_stats()
    assert [(s["requests"], s["errors"], s["in_flight"]) for s in stats] == [(1, 0, 0), (1, 0, 0)]
    assert in_use(lb) == 0


async def test_before_the_first_item_no_responders_fails_over(servers, make_lb) -> None:
    a, b = servers
    started: list[str] = []
    b.add_handler("ticks", named("b", started))  # a has nobody for it
    lb = await make_lb([a.port, b.port])
    assert [item async for item in lb.stream("ticks", {"n": 3}, timeout=WAIT_S)] == ["b:0", "b:1", "b:2"]
    stats = lb.server_stats()
    assert [(s["requests"], s["errors"], s["healthy"]) for s in stats] == [(1, 1, True), (1, 0, True)]
    assert in_use(lb) == 0
    with pytest.raises(NoResponders):  # nobody anywhere: said so
        await lb.stream("nobody").__anext__()


async def test_before_the_first_item_a_lost_connection_fails_over(servers, make_lb) -> None:
    a, b = servers
    started: list[str] = []
    held = asyncio.Event()

    async def holds(msg: Message) -> AsyncIterator[str]:
        held.set()
        await asyncio.Event().wait()
        yield "never"

    a.add_handler("ticks", holds)
    b.add_handler("ticks", named("b", started))
    proxy = await FaultProxy("127.0.0.1", a.port).start()
    try:
        lb = await make_lb([proxy.port, b.port])
        stream = lb.stream("ticks", {"n": 2}, timeout=WAIT_S)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.wait_for(held.wait(), WAIT_S)  # on a, no item yet
        proxy.cut()
        assert await asyncio.wait_for(first, WAIT_S) == "b:0"
        assert [item async for item in stream] == ["b:1"]
        assert [s["healthy"] for s in lb.server_stats()] == [False, True]
    finally:
        await proxy.close()


@pytest.mark.parametrize("fault", ["connection", "responder"])
async def test_after_the_first_item_the_error_goes_to_the_reader(servers, make_lb, fault: str) -> None:
    a, b = servers
    started: list[str] = []
    gate = asyncio.Event()
    responder = IPCClient("app", "127.0.0.1", a.port, reconnect=False)
    proxy = await FaultProxy("127.0.0.1", a.port).start()
    try:
        if fault == "responder":
            await responder.connect()
            await responder.serve("ticks", named("a", started, gate))
        else:
            a.add_handler("ticks", named("a", started, gate))
        b.add_handler("ticks", named("b", started))
        lb = await make_lb([proxy.port, b.port])
        got, errors = [], []
        try:
            async for item in lb.stream("ticks", {"n": 5}, timeout=WAIT_S):
                got.append(item)
                if fault == "connection":
                    proxy.cut()  # server a's connection goes: connection_lost, which fails over a call
                else:
                    await responder.disconnect()  # the producer goes: responder_lost
        except (ConnectionLost, ResponderLost) as exc:
            errors.append(exc)
        assert got == ["a:0"] and len(errors) == 1
        assert isinstance(errors[0], ConnectionLost if fault == "connection" else ResponderLost)
        assert started == ["a"] and b.stats.streams_opened == 0  # never started again on b
        assert sum(s["requests"] for s in lb.server_stats()) == 1
        await until(lambda: in_use(lb) == 0)
    finally:
        gate.set()
        await responder.disconnect()
        await proxy.close()


@pytest.mark.parametrize("when", ["after_items", "before_the_first_item"])
async def test_close_during_a_stream_ends_it_with_connection_lost_and_no_failover(servers, make_lb, when: str) -> None:
    a, b = servers
    closed, held = asyncio.Event(), asyncio.Event()

    async def holds(msg: Message) -> AsyncIterator[int]:
        held.set()
        try:
            await asyncio.Event().wait()
            yield 0
        finally:
            closed.set()

    a.add_handler("endless", counting_until_closed(closed) if when == "after_items" else holds)
    b.add_handler("endless", counting_until_closed(asyncio.Event()))
    lb = await make_lb([a.port, b.port])
    stream = lb.stream("endless", window=4)
    if when == "after_items":
        assert [await stream.__anext__() for _ in range(2)] == [0, 1]
        rest = asyncio.ensure_future(stream.__anext__())
    else:
        rest = asyncio.ensure_future(stream.__anext__())
        await asyncio.wait_for(held.wait(), WAIT_S)
    await lb.close()
    errors = []
    try:
        await asyncio.wait_for(rest, WAIT_S)
        async for _ in stream:
            pass
    except ConnectionLost as exc:  # as the calls in flight end, never a NotConnected from another server
        errors.append(exc)
    assert len(errors) == 1
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    await asyncio.wait_for(closed.wait(), WAIT_S)
    assert b.stats.streams_opened == 0
    assert in_use(lb) == 0 and [s["in_flight"] for s in lb.server_stats()] == [0, 0]
    with pytest.raises(NotConnected):
        await lb.stream("endless").__anext__()


async def test_the_deadline_covers_the_failovers(make_lb) -> None:
    # Just started, with no responder: each server holds a request for its
    # grace (5 s), answering no_responders a little before the request's deadline.
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=5) as a, IPCServer("127.0.0.1", 0, no_responders_grace_s=5) as b:
        lb = await make_lb([a.port, b.port])
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises((NoResponders, RequestTimeout)):
            await lb.stream("nobody", timeout=0.6).__anext__()
        elapsed = loop.time() - started
        assert 0.5 <= elapsed < 0.9, elapsed  # one deadline for both servers, not 0.6 s each
        assert a.stats.grace["held"] == 1 and b.stats.grace["held"] == 1  # both were tried
        assert in_use(lb) == 0


@pytest.mark.parametrize("leave", ["break", "cancel"])
async def test_leaving_early_cancels_at_the_producer_and_gives_the_connection_back(servers, make_lb, leave: str) -> None:
    a, b = servers
    closed = asyncio.Event()
    a.add_handler("endless", counting_until_closed(closed))
    lb = await make_lb([a.port, b.port])
    if leave == "break":
        async with lb.stream("endless", window=4) as items:
            async for item in items:
                if item == 3:
                    break
    else:
        first = asyncio.Event()

        async def read() -> None:
            async for _ in lb.stream("endless", window=4):
                first.set()

        task = asyncio.ensure_future(read())
        await asyncio.wait_for(first.wait(), WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.wait_for(closed.wait(), WAIT_S)
    await until(lambda: a.stats.streams == 0)
    assert a.stats.cancels == 1
    assert in_use(lb) == 0
    assert [(s["requests"], s["errors"], s["in_flight"]) for s in lb.server_stats()] == [(1, 0, 0), (0, 0, 0)]


async def test_other_errors_before_the_first_item_are_not_failed_over(servers, make_lb) -> None:
    def boom(msg: Message) -> Any:
        raise ValueError("no")

    for srv in servers:
        srv.add_handler("boom", boom)
    lb = await make_lb([s.port for s in servers])
    with pytest.raises(HandlerError):
        await lb.stream("boom").__anext__()
    assert sum(s["requests"] for s in lb.server_stats()) == 1
    assert in_use(lb) == 0
