"""Subscriptions and served requests as async iterators (ipc_client/iterators.py),
against the real server on loopback: the bounded buffer and its two
overflow policies, the loop's end (leaving it, aclose(), the client closed),
one answer for every served request, and restoration after a reconnection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_client.iterators import SubscriptionIterator
from ipc_client.served_requests import RequestIterator, ServedRequest
from ipc_protocol import HandlerError, LimitExceeded, NoResponders, RequestTimeout, ResponderLost, SlowConsumer
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy

FAST = {"initial_delay": 0.02, "max_delay": 0.1, "jitter": 0.0}


async def until(pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait (bounded) for a condition that a background task makes true."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


async def delivered_to(client: IPCClient, channel: str, count: int) -> asyncio.Event:
    """An event set once ``count`` publishes on ``channel`` reached ``client``:
    its callbacks run in arrival order with the iterators' buffering."""
    seen = [0]
    done = asyncio.Event()

    def count_one(msg: Any) -> None:
        seen[0] += 1
        if seen[0] == count:
            done.set()

    await client.subscribe(channel, count_one)
    return done


# -- subscriptions ------------------------------------------------------------------


async def test_a_subscription_yields_the_publishes_in_order_and_async_with_unsubscribes(make_client: Any) -> None:
    sub_client, pub = await make_client(), await make_client()
    async with sub_client.subscription("orders.*") as sub:
        assert isinstance(sub, SubscriptionIterator)
        for i in range(5):
            await pub.publish(f"orders.{i}", {"i": i})
        got = []
        for _ in range(5):
            msg = await anext(sub)
            got.append((msg.channel_id, msg.payload["i"]))
        assert got == [(f"orders.{i}", i) for i in range(5)]
    assert sub_client._subs.handlers == {}
    assert await pub.publish("orders.x", 1, ack=True) == 0  # the server forgot it too


async def test_break_unsubscribes_as_in_node(make_client: Any) -> None:
    sub_client, pub = await make_client(), await make_client()
    seen = []

    async def consume() -> None:
        async for msg in sub_client.subscription("ticks"):
            seen.append(msg.payload)
            if len(seen) == 2:
                break

    task = asyncio.create_task(consume())
    await until(lambda: "ticks" in sub_client._subs.handlers)
    async with asyncio.timeout(WAIT_S):
        while not task.done():
            await pub.publish("ticks", len(seen), ack=True)
            await asyncio.sleep(0.005)
    await task
    await until(lambda: sub_client._subs.handlers == {})
    assert await pub.publish("ticks", "late", ack=True) == 0


async def test_drop_oldest_keeps_the_newest_counts_and_reports_once(make_client: Any) -> None:
    sub_client, pub = await make_client(), await make_client()
    errors: list[BaseException] = []
    sub_client.on_error(errors.append)
    sub = sub_client.subscription("feed", max_buffered=3)
    await sub.start()
    arrived = await delivered_to(sub_client, "feed", 10)
    for i in range(10):
        await pub.publish("feed", i)
    await asyncio.wait_for(arrived.wait(), WAIT_S)
    assert [(await anext(sub)).payload for _ in range(3)] == [7, 8, 9]
    assert sub.dropped == 7 and sub_client.metrics()["iterator_dropped"] == 7
    assert len(errors) == 1 and isinstance(errors[0], SlowConsumer)
    assert errors[0].details == {"channel": "feed", "max_buffered": 3, "overflow": "drop_oldest", "dropped": 1}
    # Caught up (the buffer emptied): the next overflow is reported again.
    arrived = await delivered_to(sub_client, "feed", 5)
    for i in range(5):
        await pub.publish("feed", i)
    await asyncio.wait_for(arrived.wait(), WAIT_S)
    assert len(errors) == 2 and sub.dropped == 9
    await sub.aclose()


async def test_overflow_error_gives_what_was_buffered_then_raises_slow_consumer(make_client: Any) -> None:
    sub_client, pub = await make_client(), await make_client()
    sub = sub_client.subscription("feed", max_buffered=2, overflow="error")
    await sub.start()
    arrived = await delivered_to(sub_client, "feed", 5)
    for i in range(5):
        await pub.publish("feed", i)
    await asyncio.wait_for(arrived.wait(), WAIT_S)
    got = []
    with pytest.raises(SlowConsumer) as info:
        async for msg in sub:
            got.append(msg.payload)
    assert got == [0, 1]
    assert info.value.code == "slow_consumer" and info.value.details == {"channel": "feed", "max_buffered": 2, "overflow": "error"}
    assert sub.dropped == 0
    await until(lambda: len(sub_client._subs.handlers["feed"]) == 1)  # only the counting callback is left


async def test_the_loop_ends_after_the_buffer_when_the_client_disconnects(make_client: Any) -> None:
    sub_client, pub = await make_client(), await make_client()
    sub = sub_client.subscription("feed")
    await sub.start()
    arrived = await delivered_to(sub_client, "feed", 2)
    await pub.publish("feed", "a")
    await pub.publish("feed", "b")
    await asyncio.wait_for(arrived.wait(), WAIT_S)
    await sub_client.disconnect()
    got = [msg.payload async for msg in sub]
    assert got == ["a", "b"]
    assert sub._offer not in sub_client._subs.handlers["feed"]  # a later connect() does not restore it


async def test_a_waiting_loop_ends_when_the_client_disconnects(make_client: Any) -> None:
    sub_client = await make_client()
    sub = sub_client.subscription("feed")
    await sub.start()
    waiting = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    await sub_client.disconnect()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, WAIT_S)


async def test_a_subscription_iterator_survives_a_reconnection(server: IPCServer, make_client: Any) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        sub_client = await make_client(port=proxy.port, **FAST)
        pub = await make_client()
        reconnected = asyncio.Event()
        sub_client.on("reconnected", lambda *_: reconnected.set())
        async with sub_client.subscription("orders.>") as sub:
            await pub.publish("orders.a", 1)
            assert (await anext(sub)).payload == 1
            proxy.cut()
            await asyncio.wait_for(reconnected.wait(), WAIT_S)
            await pub.publish("orders.a.b", 2)
            assert (await asyncio.wait_for(anext(sub), WAIT_S)).payload == 2


async def test_bad_arguments_are_refused(make_client: Any) -> None:
    client = await make_client()
    with pytest.raises(ValueError, match="overflow"):
        client.subscription("a", overflow="reject")
    with pytest.raises(ValueError, match="max_buffered"):
        client.subscription("a", max_buffered=0)
    with pytest.raises(ValueError, match="max_buffered"):
        client.requests("a", max_buffered=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty token"):
        client.subscription("a..b")


# -- served requests -------------------------------------------------------------------


async def serve_with(client: IPCClient, channel: str, answer: Callable[[ServedRequest], Any], **kwargs: Any) -> tuple[RequestIterator, asyncio.Task[None]]:
    it = client.requests(channel, **kwargs)
    await it.start()

    async def loop() -> None:
        async for req in it:
            await answer(req)

    return it, asyncio.create_task(loop())


async def test_requests_are_answered_by_respond_and_fail(make_client: Any) -> None:
    responder, caller = await make_client(), await make_client()

    async def answer(req: ServedRequest) -> None:
        if req.payload == "bad":
            assert await req.fail(ValueError("no"))
        elif req.payload == "limit":
            await req.fail(LimitExceeded("too many", details={"n": 1}))
        else:
            assert await req.respond({"echo": req.payload, "channel": req.channel})
        assert req.answered

    it, task = await serve_with(responder, "jobs.*", answer)
    assert await caller.request("jobs.a", 1) == {"echo": 1, "channel": "jobs.a"}
    with pytest.raises(HandlerError) as info:
        await caller.request("jobs.a", "bad")
    assert info.value.remote_type == "ValueError"
    with pytest.raises(LimitExceeded) as limit:
        await caller.request("jobs.b", "limit")
    assert limit.value.details == {"n": 1}
    task.cancel()
    await until(lambda: responder._subs.services == {})
    with pytest.raises(NoResponders):
        await caller.request("jobs.a", 1)


async def test_a_request_is_answered_once(make_client: Any) -> None:
    responder, caller = await make_client(), await make_client()
    async with responder.requests("once") as it:
        call = asyncio.create_task(caller.request("once", 1))
        req = await anext(it)
        assert await req.respond(2) is True
        with pytest.raises(RuntimeError, match="already answered"):
            await req.respond(3)
        assert await call == 2


async def test_leaving_the_loop_answers_what_it_held_responder_lost_and_unserves(make_client: Any) -> None:
    responder, caller = await make_client(), await make_client()
    it = responder.requests("jobs")
    await it.start()
    calls = [asyncio.create_task(caller.request("jobs", i)) for i in range(3)]
    await until(lambda: it.buffered == 3)
    async for req in it:
        assert req.payload == 0
        break  # holding request 0, unanswered; 1 and 2 still buffered
    for call in calls:
        with pytest.raises(ResponderLost):
            await asyncio.wait_for(call, WAIT_S)
    await until(lambda: responder._subs.services == {})
    with pytest.raises(NoResponders):
        await caller.request("jobs", 9)
    assert await req.respond("late") is False


async def test_requests_drop_oldest_answers_limit_exceeded(make_client: Any) -> None:
    responder, caller = await make_client(), await make_client()
    async with responder.requests("jobs", max_buffered=2) as it:
        calls = [asyncio.create_task(caller.request("jobs", i)) for i in range(5)]
        await until(lambda: it.buffered + it.dropped == 5)
        assert it.dropped == 3 and responder.metrics()["iterator_dropped"] == 3
        for req in [await anext(it), await anext(it)]:
            await req.respond(req.payload * 10)
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(r) for r in results[:3]] == [LimitExceeded] * 3
    assert results[3:] == [30, 40]
    assert results[0].details == {"channel": "jobs", "max_buffered": 2, "overflow": "drop_oldest"}  # type: ignore[union-attr]


async def test_requests_overflow_error_refuses_the_one_past_the_bound_and_ends_the_loop(make_client: Any) -> None:
    responder, caller = await make_client(), await make_client()
    it = responder.requests("jobs", max_buffered=2, overflow="error")
    await it.start()
    calls = [asyncio.create_task(caller.request("jobs", i)) for i in range(2)]
    await until(lambda: it.buffered == 2)
    with pytest.raises(LimitExceeded):
        await caller.request("jobs", 2)
    with pytest.raises(SlowConsumer):
        async for req in it:
            await req.respond(req.payload)
    assert await asyncio.gather(*calls) == [0, 1]
    await until(lambda: responder._subs.services == {})


async def test_a_request_whose_requester_gave_up_is_skipped(make_client: Any) -> None:
    responder, caller = await make_client(), await make_client()
    async with responder.requests("jobs") as it:
        with pytest.raises(RequestTimeout):
            await caller.request("jobs", "stale", timeout=0.1)
        loop = asyncio.get_running_loop()
        await until(lambda: it.buffered == 1 and it._items[0]._expires is not None and it._items[0]._expires <= loop.time())
        call = asyncio.create_task(caller.request("jobs", "fresh"))
        req = await asyncio.wait_for(anext(it), WAIT_S)
        assert req.payload == "fresh"
        await req.respond("ok")
        assert await call == "ok"


async def test_a_requests_iterator_survives_a_reconnection_and_skips_what_the_lost_connection_held(
    server: IPCServer, make_client: Any
) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        responder = await make_client(port=proxy.port, **FAST)
        caller = await make_client()
        reconnected = asyncio.Event()
        responder.on("reconnected", lambda *_: reconnected.set())
        async with responder.requests("jobs") as it:
            lost = asyncio.create_task(caller.request("jobs", "before"))
            await until(lambda: it.buffered == 1)
            proxy.cut()
            with pytest.raises(ResponderLost):
                await asyncio.wait_for(lost, WAIT_S)
            await asyncio.wait_for(reconnected.wait(), WAIT_S)
            call = asyncio.create_task(caller.request("jobs", "after"))
            req = await asyncio.wait_for(anext(it), WAIT_S)
            assert req.payload == "after"
            await req.respond("ok")
            assert await call == "ok"


async def test_a_refused_registration_raises_from_the_loop(make_client: Any) -> None:
    client = await make_client()
    client.serve("taken", lambda msg: 1)
    with pytest.raises(Exception) as info:
        async for _ in client.requests("taken"):
            pass
    assert info.value.code == "already_serving"  # type: ignore[attr-defined]


async def test_a_closed_iterator_never_registers(make_client: Any) -> None:
    client = await make_client()
    sub = client.subscription("feed")
    await sub.aclose()
    assert [m async for m in sub] == []
    await sub.start()
    assert client._subs.handlers == {}


async def test_a_request_whose_requester_cancels_is_skipped_or_flagged(make_client: Any) -> None:
    responder, caller = await make_client(), await make_client()
    async with responder.requests("jobs") as it:
        held_call = asyncio.create_task(caller.request("jobs", "held"))
        held = await asyncio.wait_for(anext(it), WAIT_S)
        buffered_call = asyncio.create_task(caller.request("jobs", "buffered"))
        await until(lambda: it.buffered == 1)
        held_call.cancel()
        buffered_call.cancel()
        await until(lambda: held.cancelled and it._items[0]._future.cancelled())  # the cancel frames (protocol.md §15.4)
        assert await held.respond("late") is False
        call = asyncio.create_task(caller.request("jobs", "fresh"))
        req = await asyncio.wait_for(anext(it), WAIT_S)
        assert req.payload == "fresh" and not req.cancelled
        await req.respond("ok")
        assert await call == "ok"
