"""Cancellation that crosses the bridge, over real loopback TCP
(docs/protocol.md §15.4): a Python caller that gives up stops whoever runs
its request, an answer that comes anyway is dropped and counted, and is
never taken for another request's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S, frame, until


async def started_request(client: IPCClient, channel: str, started: asyncio.Event, **kwargs: Any) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(client.send_request(channel, None, **kwargs))
    await asyncio.wait_for(started.wait(), WAIT_S)
    return task


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_send_request_cancels_the_python_responders_handler(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(msg: Message) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    await responder.serve("slow", slow)
    task = await started_request(caller, "slow", started)
    await cancel_and_wait(task)
    assert len(caller._calls) == 0  # forgotten at once, not at its deadline
    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    await until(lambda: len(server._forwarding) == 0)
    assert server.stats.cancels == 1
    assert (await caller.system("ping"))["status"] == "pong"


async def test_a_cancelled_call_cancels_an_in_process_async_handler(server: IPCServer, make_client: Callable[..., Any]) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    @server.handler("local.slow")
    async def slow(msg: Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = await make_client()
    task = await started_request(caller, "local.slow", started)
    await cancel_and_wait(task)
    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    await until(lambda: len(server._calls) == 0)


async def test_a_sync_handler_cannot_be_stopped_so_its_result_is_dropped_and_counted(server: IPCServer, make_client: Callable[..., Any]) -> None:
    import threading

    started, release, finished = asyncio.Event(), threading.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    @server.handler("local.blocking")
    def blocking(msg: Message) -> str:
        loop.call_soon_threadsafe(started.set)
        release.wait(WAIT_S)
        finished.set()
        return "late"

    caller = await make_client()
    task = await started_request(caller, "local.blocking", started)
    await cancel_and_wait(task)
    await until(lambda: server.stats.cancels == 1)
    release.set()
    await until(lambda: server.stats.late_answers == 1)
    assert finished.is_set()
    errors: list[Any] = []
    caller.on_error(errors.append)
    assert (await caller.system("ping"))["status"] == "pong"
    assert errors == []


async def test_a_handler_that_ignores_cancellation_has_its_answer_dropped(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    started, answered = asyncio.Event(), asyncio.Event()

    async def stubborn(msg: Message) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # ignores it, and answers anyway
        answered.set()
        return "late"

    await responder.serve("stubborn", stubborn)
    task = await started_request(caller, "stubborn", started)
    await cancel_and_wait(task)
    await asyncio.wait_for(answered.wait(), WAIT_S)
    await until(lambda: responder._subs.producers.late_answers == 1)  # not sent
    assert server.stats.errors.get("handler_error", 0) == 0


async def test_the_servers_deadline_cancels_the_responders_handler(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    cancelled = asyncio.Event()

    async def slow(msg: Message) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await responder.serve("slow", slow)
    with pytest.raises(RequestTimeout):
        await caller.send_request("slow", None, timeout=0.2)
    await asyncio.wait_for(cancelled.wait(), WAIT_S)


async def test_a_requester_that_disconnects_cancels_the_responders_handler(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(msg: Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await responder.serve("slow", slow)
    task = await started_request(caller, "slow", started)
    await caller.disconnect()
    with pytest.raises(Exception):
        await task
    await asyncio.wait_for(cancelled.wait(), WAIT_S)


async def test_a_cancelled_call_waiting_in_the_offline_queue_leaves_it(make_client: Callable[..., Any], server: IPCServer) -> None:
    caller = await make_client(reconnect=True)
    caller._sm.set(caller._sm.state.__class__.RECONNECTING)  # as while a reconnection runs: calls are queued
    try:
        task = asyncio.ensure_future(caller.send_request("anything", None, timeout=WAIT_S))
        await until(lambda: len(caller._outbox.queue) == 1)
        await cancel_and_wait(task)
        assert len(caller._outbox.queue) == 0 and len(caller._calls) == 0
    finally:
        caller._sm.set(caller._sm.state.__class__.CONNECTED)


async def test_a_late_answer_never_reaches_another_request_under_the_same_id(server: IPCServer, raw: Callable[[], Any]) -> None:
    """Two requesters use the same message id; the first gives up. The
    responder's late answer to the first must not answer the second."""

    async def peer(name: str) -> Any:
        p = await raw()
        p.send(frame("request", "system", {"action": "connect", "connection_id": name, "protocol": 2, "features": ["cancel", "streams"]}, message_id="hello"))
        assert (await p.recv()).payload["status"] == "connected"
        return p

    responder, first, second = await peer("r"), await peer("a"), await peer("b")
    responder.send(frame("subscribe", "work", {"serve": True}, message_id="sub"))
    await responder.recv()
    first.send(frame("request", "work", 1, message_id="same", timeout_ms=5000))
    forwarded = await responder.recv()
    assert forwarded.message_id == "same"  # the requester's own frame
    first.send(frame("cancel", "work", {"reason": "cancelled"}, message_id="c", reply_to="same"))
    stop = await responder.recv()
    assert (stop.message_type.value, stop.reply_to) == ("cancel", "same")
    second.send(frame("request", "work", 2, message_id="same", timeout_ms=5000))
    again = await responder.recv()
    assert again.payload == 2 and again.message_id != "same"  # a new server id: "same" is retired
    responder.send(frame("response", "work", "late answer to the first", message_id="r1", reply_to="same"))
    responder.send(frame("response", "work", "answer to the second", message_id="r2", reply_to=again.message_id))
    answer = await second.recv()
    assert (answer.payload, answer.reply_to) == ("answer to the second", "same")
    await until(lambda: server.stats.late_answers == 1)
    with pytest.raises(TimeoutError):
        await first.recv(timeout=0.2)  # nothing for the requester that gave up


class SlowCleanup:
    """A handler that runs until cancelled, then cleans up over an await
    (a connection to give back, a flush) that only ends once released."""

    def __init__(self) -> None:
        self.started, self.cleaning = asyncio.Event(), asyncio.Event()
        self._release, self._done = asyncio.Event(), asyncio.Event()

    async def __call__(self, msg: Message) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cleaning.set()
            await asyncio.wait_for(self._release.wait(), WAIT_S)
            self._done.set()

    async def cleaned(self) -> None:
        """Release the cleanup's await; return once it ran to its end."""
        self._release.set()
        await asyncio.wait_for(self._done.wait(), WAIT_S)


@pytest.mark.parametrize("then", ["disconnect", "server_close"])
async def test_a_cancelled_in_process_handler_finishes_its_cleanup_whatever_follows(server: IPCServer, make_client: Callable[..., Any], then: str) -> None:
    """One cancel per handler: the connection's close after the cancel (or
    close() of the server) must not cancel its cleanup in turn."""
    holds = SlowCleanup()
    server.add_handler("holds", holds)
    client = await make_client()
    await cancel_and_wait(await started_request(client, "holds", holds.started))  # the cancel frame stops it
    await asyncio.wait_for(holds.cleaning.wait(), WAIT_S)
    if then == "disconnect":
        await client.disconnect()
        await until(lambda: not server.connections)
    else:
        await server.close(grace_s=0)
    await holds.cleaned()  # its cleanup was cut short by a second cancel


async def test_a_cancelled_python_responder_finishes_its_cleanup_when_it_disconnects(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    holds = SlowCleanup()
    await responder.serve("holds", holds)
    await cancel_and_wait(await started_request(caller, "holds", holds.started))
    await asyncio.wait_for(holds.cleaning.wait(), WAIT_S)
    await responder.disconnect()  # its teardown cancels what still runs: not this one again
    await holds.cleaned()


async def test_a_call_cancelled_while_its_frame_waits_in_a_full_socket_buffer_sends_its_cancel(server: IPCServer, make_client: Callable[..., Any]) -> None:
    """The request is written but not yet taken by the socket (writing
    paused): cancelling it then must still cancel the responder's handler,
    and count the call in neither KPI (docs/resilience.md §2)."""
    caller, responder = await make_client(), await make_client()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(msg: Message) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    await responder.serve("slow", slow)
    before = caller.metrics()
    task = asyncio.ensure_future(caller.send_request("slow", {"pad": "x" * 8_000_000}, timeout=WAIT_S))
    await asyncio.sleep(0)  # one step: the frame is in the transport's buffer, over its high-water mark
    assert caller._link.conn.writing_paused and not task.done()
    await cancel_and_wait(task)
    assert len(caller._calls) == 0
    await asyncio.wait_for(started.wait(), WAIT_S)  # the frame still went out
    await asyncio.wait_for(cancelled.wait(), WAIT_S)  # and its cancel right behind it
    await until(lambda: server.stats.cancels == 1)
    after = caller.metrics()
    assert after["messages_failed"] == before["messages_failed"]
    assert after["messages_delivered"] == before["messages_delivered"]


async def test_a_python_responders_sync_handler_answering_after_a_cancel_counts_a_late_answer(server: IPCServer, make_client: Callable[..., Any]) -> None:
    """Its thread cannot be stopped: the answer it gives anyway is dropped,
    and counted in the responder's late_answers once the thread ends."""
    import threading

    caller, responder = await make_client(), await make_client()
    started, release, finished = asyncio.Event(), threading.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    def blocking(msg: Message) -> str:
        loop.call_soon_threadsafe(started.set)
        release.wait(WAIT_S)
        finished.set()
        return "late"

    await responder.serve("blocking", blocking)
    task = await started_request(caller, "blocking", started)
    await cancel_and_wait(task)
    await until(lambda: server.stats.cancels == 1)
    tasks = responder._admission.tasks
    await until(lambda: all(t.done() for t in tasks))  # its task ended on the cancel; its thread runs on
    assert len(tasks) == 1  # and keeps its slot until it ends (docs/resilience.md §10)
    assert responder.metrics()["late_answers"] == 0
    release.set()
    await until(lambda: responder.metrics()["late_answers"] == 1)
    await until(lambda: len(responder._admission.tasks) == 0)
    assert finished.is_set() and server.stats.late_answers == 0  # never sent
