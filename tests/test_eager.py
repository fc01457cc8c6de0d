"""An in-process handler (and a client's served request) runs in a task of
its own, however it is started (eagerly on Python 3.12+), or at once on 3.11
when its code never waits (ipc_client.at_once):
``asyncio.timeout()``, ``TaskGroup`` and ``current_task()`` work from its
first line, its context variables stay its own, every call is answered
once, and the answers of one read's requests still go out together."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pydantic import BaseModel

from ipc_protocol import BadRequest, HandlerError, Message, RequestTimeout
from ipc_protocol.contracts import bind
from ipc_server import IPCServer
from ipc_client.at_once import AtOnce, never_waits, result_of

from .conftest import WAIT_S, counting_until_closed


async def test_a_handler_can_use_the_task_machinery_from_its_first_line(server: IPCServer, make_client: Callable[..., Any]) -> None:
    client = await make_client()
    async def timed(msg: Message) -> Any:
        async with asyncio.timeout(5):  # needs a current task
            me = asyncio.current_task()
            async with asyncio.TaskGroup() as group:
                child = group.create_task(asyncio.sleep(0, "child"))
            return {"task": me is not None, "child": child.result(), "payload": msg.payload}

    async def quick(msg: Message) -> Any:
        return {"task": asyncio.current_task() is not None}

    server.add_handler("timed", timed)
    server.add_handler("quick", quick)
    assert await client.request("timed", 1) == {"task": True, "child": "child", "payload": 1}
    assert await client.request("quick", None) == {"task": True}


# -- what runs at once on Python 3.11 (eager.never_waits) --------------------------------


class _Service:
    async def quick(self, msg: Message) -> Any:
        return msg.payload

    async def slow(self, msg: Message) -> Any:
        await asyncio.sleep(0)
        return msg.payload


async def _no_await(msg: Message) -> Any:
    return [x for x in range(3)]


async def _awaits(msg: Message) -> Any:
    return await asyncio.sleep(0, msg)


async def _async_with(msg: Message) -> Any:
    async with asyncio.timeout(1):
        return 1


async def _async_for(msg: Message) -> Any:
    async for item in _items():
        return item


async def _items() -> AsyncIterator[int]:
    yield 1


def _plain(msg: Message) -> Any:
    return 1


class _AsyncCallable:
    async def __call__(self, msg: Message) -> Any:
        return 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ starts every handler's task eagerly instead")
def test_only_an_async_def_that_never_awaits_is_run_at_once() -> None:
    assert never_waits(_no_await) and never_waits(_Service().quick)
    for fn in (_awaits, _async_with, _async_for, _Service().slow, _items, _plain, _AsyncCallable(), functools.partial(_no_await)):
        assert not never_waits(fn), fn


class _Point(BaseModel):
    x: int


async def _typed_quick(point: _Point) -> int:
    return point.x


async def _typed_slow(point: _Point) -> int:
    await asyncio.sleep(0)
    return point.x


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ starts every handler's task eagerly instead")
async def test_a_typed_handler_that_never_awaits_is_run_at_once_too(server: IPCServer, make_client: Callable[..., Any]) -> None:
    assert never_waits(bind(_typed_quick)) and not never_waits(bind(_typed_slow))
    assert not never_waits(bind(functools.partial(_typed_quick)))
    tasks: dict[str, str] = {}

    async def quick(point: _Point) -> int:
        tasks["quick"] = asyncio.current_task().get_name()  # type: ignore[union-attr]
        return point.x

    async def slow(point: _Point) -> int:
        tasks["slow"] = asyncio.current_task().get_name()  # type: ignore[union-attr]
        await asyncio.sleep(0)
        return point.x

    server.add_handler("quick", quick)
    server.add_handler("slow", slow)
    client = await make_client()
    assert await client.request("quick", {"x": 3}) == 3 and await client.request("slow", {"x": 4}) == 4
    with pytest.raises(BadRequest):
        await client.request("quick", {"x": "three"})  # still validated
    assert tasks["quick"] == "handler run at once" and tasks["slow"] != "handler run at once"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.11 runs a handler that never awaits at once")
def test_on_3_12_every_handler_gets_its_eager_task() -> None:
    assert not never_waits(_no_await)


async def test_a_handler_run_at_once_keeps_its_context_variables_to_itself(server: IPCServer, make_client: Callable[..., Any]) -> None:
    seen = contextvars.ContextVar("seen", default=0)

    async def count(msg: Message) -> Any:
        before = seen.get()
        seen.set(before + 1)  # in a copy of the context, as a task's own
        return before

    server.add_handler("count", count)
    client = await make_client()
    assert [await client.request("count", None) for _ in range(3)] == [0, 0, 0]
    assert await asyncio.gather(*(client.request("count", None) for _ in range(20))) == [0] * 20


@pytest.mark.parametrize("waits", [False, True], ids=["at-once", "task"])
async def test_a_handler_that_raises_cancelled_error_is_answered_as_failed(waits: bool, server: IPCServer, make_client: Callable[..., Any]) -> None:
    async def at_once(msg: Message) -> Any:
        raise asyncio.CancelledError

    async def in_task(msg: Message) -> Any:
        await asyncio.sleep(0)
        raise asyncio.CancelledError

    server.add_handler("gives.up", in_task if waits else at_once)
    client = await make_client()
    with pytest.raises(HandlerError, match="'gives.up' was cancelled"):
        await client.request("gives.up", None, timeout=WAIT_S)
    assert await client.request("system", {"action": "ping"}) == {"status": "pong"}  # the connection is fine
    assert len(server._calls) == 0


async def test_a_notification_handler_run_at_once_that_fails_is_counted_and_logged(
    server: IPCServer, make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []

    async def note(msg: Message) -> Any:
        seen.append(msg.payload)
        if msg.payload == "bad":
            raise ValueError("no good")

    server.add_handler("note", note)
    client = await make_client()
    with caplog.at_level("WARNING", logger="ipc_server"):
        for payload in ("ok", "bad", "ok"):
            await client.notify("note", payload)
        assert await client.request("system", {"action": "ping"}) == {"status": "pong"}  # read after the three
    assert seen == ["ok", "bad", "ok"]
    assert server.stats.errors["handler_error"] == 1
    assert [r.getMessage() for r in caplog.records if "notification handler" in r.getMessage()] == ["notification handler for 'note' failed: ValueError: no good"]  # its one line names the type too
    (conn,) = server._admission.connections
    assert conn.inflight.count == 0 and len(server._calls) == 0


async def test_a_handler_run_at_once_can_return_a_stream_with_its_deadline(server: IPCServer, make_client: Callable[..., Any]) -> None:
    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def forever() -> AsyncIterator[int]:
        yield 0
        await asyncio.Event().wait()

    async def count(msg: Message) -> Any:
        return numbers(msg.payload)  # a stream, started by a handler that never awaits

    async def stuck(msg: Message) -> Any:
        return forever()

    server.add_handler("count", count)
    server.add_handler("stuck", stuck)
    client = await make_client()
    assert [item async for item in client.stream("count", 50)] == list(range(50))
    got = []
    with pytest.raises(RequestTimeout):
        async for item in client.stream("stuck", None, timeout=0.2):  # the whole stream's deadline (§15.5)
            got.append(item)
    assert got == [0]
    async with asyncio.timeout(WAIT_S):
        while len(server._calls):
            await asyncio.sleep(0.005)


async def test_at_once_is_not_for_calls_made_from_a_task() -> None:
    loop = asyncio.get_running_loop()
    at_once = AtOnce(loop)
    assert not at_once.possible()  # this test is a task: a handler started here gets its own
    seen: list[bool] = []
    loop.call_soon(lambda: seen.append(at_once.possible()))
    await asyncio.sleep(0)
    assert seen == [True]


def test_result_of_refuses_a_coroutine_that_waits_after_all() -> None:
    coro = _awaits(None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="waited"):
        result_of(coro)
    assert coro.cr_frame is None  # closed, never resumed


# -- a client's served requests (Subscriptions._answer_at_once) --------------------------


async def test_a_served_handler_run_at_once_answers_keeps_its_context_and_can_stream(make_client: Callable[..., Any]) -> None:
    requester, responder = await make_client(), await make_client()
    seen = contextvars.ContextVar("seen", default=0)
    closed = asyncio.Event()
    endless = counting_until_closed(closed)

    async def count(msg: Message) -> Any:
        before = seen.get()
        seen.set(before + 1)
        return {"before": before, "task": asyncio.current_task() is not None, "payload": msg.payload}

    async def stream(msg: Message) -> Any:
        return endless(msg)  # a stream, started by a handler that never awaits

    await responder.serve("count", count)
    await responder.serve("stream", stream)
    assert all(never_waits(fn) for fn in (count, stream)) == (sys.version_info < (3, 12))
    answers = await asyncio.gather(*(requester.request("count", i) for i in range(20)))
    assert answers == [{"before": 0, "task": True, "payload": i} for i in range(20)]
    got = []
    async with contextlib.aclosing(requester.stream("stream", window=4)) as items:  # type: ignore[type-var]
        async for item in items:
            got.append(item)
            if len(got) == 10:
                break
    assert got == list(range(10))
    await asyncio.wait_for(closed.wait(), WAIT_S)  # the cancel reached the producer's task
    await responder.serve("count.too", count)  # one function on two channels
    await responder.unserve("count")
    assert ("count.too" in responder._subs._never_waits) == (sys.version_info < (3, 12))
    assert await requester.request("count.too", 20) == {"before": 0, "task": True, "payload": 20}
    await responder.unserve("count.too")
    assert "count.too" not in responder._subs._never_waits


async def test_a_served_handler_that_raises_cancelled_error_is_answered_as_failed(make_client: Callable[..., Any]) -> None:
    requester, responder = await make_client(), await make_client()

    async def gives_up(msg: Message) -> Any:
        raise asyncio.CancelledError

    await responder.serve("gives.up", gives_up)
    with pytest.raises(HandlerError, match="'gives.up' was cancelled"):
        await requester.request("gives.up", None, timeout=WAIT_S)
    assert await requester.request("system", {"action": "ping"}) == {"status": "pong"}


# -- a client's deliveries (Subscriptions._deliver_at_once) ------------------------------


async def test_an_async_subscription_handler_that_never_waits_runs_at_once_in_order(make_client: Callable[..., Any]) -> None:
    publisher, subscriber = await make_client(), await make_client()
    seen = contextvars.ContextVar("seen", default=0)
    order: list[tuple[str, Any, int, bool, str | None]] = []
    got_all = asyncio.Event()

    async def quick(msg: Message) -> None:
        before = seen.get()
        seen.set(before + 1)
        task = asyncio.current_task()
        order.append(("quick", msg.payload, before, task is not None, task.get_name() if task else None))

    def plain(msg: Message) -> None:
        order.append(("plain", msg.payload, seen.get(), False, None))
        if msg.payload == 19:
            got_all.set()

    await subscriber.subscribe("news", quick)
    await subscriber.subscribe("news", plain)
    for i in range(20):
        await publisher.publish("news", i)
    await asyncio.wait_for(got_all.wait(), WAIT_S)
    at_once = sys.version_info < (3, 12)
    assert never_waits(quick) == at_once
    if at_once:  # each one's own context and a current task, before the next handler of the same publish
        name = "handler run at once"
        assert order == [entry for i in range(20) for entry in (("quick", i, 0, True, name), ("plain", i, 0, False, None))]
    else:
        assert sorted(e[:3] for e in order if e[0] == "plain") == [("plain", i, 0) for i in range(20)]


async def test_an_async_subscription_handler_run_at_once_that_fails_is_emitted_and_the_next_still_runs(make_client: Callable[..., Any]) -> None:
    publisher, subscriber = await make_client(), await make_client()
    errors: list[BaseException] = []
    subscriber.on("error", errors.append)
    got: list[Any] = []
    last = asyncio.Event()

    async def picky(msg: Message) -> None:
        if msg.payload == "bad":
            raise ValueError("not this one")
        if msg.payload == "cancel":
            raise asyncio.CancelledError  # its own: reported as any failure (README, subscribe)
        got.append(msg.payload)
        if msg.payload == "last":
            last.set()

    await subscriber.subscribe("picky", picky)
    for payload in ("bad", "cancel", "ok", "last"):
        await publisher.publish("picky", payload)
    await asyncio.wait_for(last.wait(), WAIT_S)
    assert got == ["ok", "last"]
    assert [type(e) for e in errors] == [ValueError, asyncio.CancelledError]
