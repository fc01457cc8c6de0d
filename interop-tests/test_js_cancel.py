"""Cancellation that crosses the bridge (docs/protocol.md §15.4): a Node
caller's AbortSignal cancels a Python responder's task and a Python
in-process handler; a Python caller's task.cancel() aborts a Node handler's
ctx.signal; the server's deadline does the same; a handler that ignores the
cancel has its late answer dropped and counted."""

from __future__ import annotations

import asyncio
import time

import pytest

from ipc_protocol import Message, RequestTimeout

from conftest import WAIT_S


async def test_a_node_abort_cancels_the_python_responders_task(server, node_agent, py_client):
    responder = await py_client(server.port)
    started, cancelled = asyncio.Event(), asyncio.Event()
    cancelled_at: list[float] = []

    async def slow(msg: Message) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled_at.append(time.time() * 1000)
            cancelled.set()
            raise
        return "never"

    await responder.serve("slow", slow)
    agent = await node_agent(server.port)
    await agent.call("startAbortable", tag="a", channel="slow", timeoutMs=10_000)
    await asyncio.wait_for(started.wait(), WAIT_S)
    aborted_at = (await agent.call("abort", tag="a"))["abortedAt"]
    done = await agent.wait_event("abortDone")
    assert done["ok"] is False
    assert (done["error"]["code"], done["error"]["name"]) == ("cancelled", "AbortError")
    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    assert 0 <= cancelled_at[0] - aborted_at < 5000  # the same host's wall clock
    stats = await responder.system("stats")
    assert stats["cancels"] == 1 and stats["late_answers"] == 0


async def test_a_node_abort_cancels_a_python_in_process_handler(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    await agent.call("startAbortable", tag="b", channel="py.cancellable")
    async with asyncio.timeout(WAIT_S):  # the handler is running once the server counts the request
        while (await agent.call("system", action="stats"))["requests"] < 1:
            await asyncio.sleep(0.01)
    await agent.call("abort", tag="b")
    assert (await agent.wait_event("abortDone"))["error"]["code"] == "cancelled"
    async with asyncio.timeout(WAIT_S):
        while (await agent.call("request", channel="py.cancelled"))["payload"] != 1:
            await asyncio.sleep(0.01)


async def test_a_python_task_cancel_aborts_the_node_handlers_signal(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveAbortable", channel="node.slow")
    caller = await py_client(server.port)
    task = asyncio.ensure_future(caller.send_request("node.slow", None, timeout=10))
    await agent.wait_event("handlerStarted")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(caller._calls) == 0
    aborted = await agent.wait_event("handlerAborted")
    assert (aborted["reason"]["code"], aborted["reason"]["name"]) == ("cancelled", "AbortError")


async def test_the_servers_deadline_aborts_the_node_handler(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveAbortable", channel="node.slow")
    caller = await py_client(server.port)
    with pytest.raises(RequestTimeout):
        await caller.send_request("node.slow", None, timeout=0.3)
    aborted = await agent.wait_event("handlerAborted")
    assert aborted["reason"]["code"] == "timeout"


async def test_a_node_handler_that_ignores_the_cancel_has_its_answer_dropped_and_counted(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serveAbortable", channel="node.stubborn", ignore=True)
    caller = await py_client(server.port)
    errors: list[BaseException] = []
    caller.on_error(errors.append)
    task = asyncio.ensure_future(caller.send_request("node.stubborn", None, timeout=10))
    await agent.wait_event("handlerStarted")
    task.cancel()
    await agent.wait_event("handlerAborted")
    async with asyncio.timeout(WAIT_S):
        while (await agent.call("metrics"))["lateAnswers"] != 1:
            await asyncio.sleep(0.01)
    assert (await caller.system("ping"))["status"] == "pong"
    assert errors == []


async def test_a_node_abort_of_a_stream_closes_the_python_generator(server, node_agent, py_client):
    producer = await py_client(server.port)
    closed = asyncio.Event()

    async def endless(msg: Message):  # type: ignore[no-untyped-def]
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.005)
        finally:
            closed.set()

    await producer.serve("endless", endless)
    agent = await node_agent(server.port)
    await agent.call("startAbortable", tag="s", kind="stream", channel="endless")
    async with asyncio.timeout(WAIT_S):
        while (await producer.system("stats"))["stream_items"] < 3:
            await asyncio.sleep(0.01)
    await agent.call("abort", tag="s")
    done = await agent.wait_event("abortDone")
    assert (done["error"]["code"], done["error"]["name"]) == ("cancelled", "AbortError")
    await asyncio.wait_for(closed.wait(), WAIT_S)
