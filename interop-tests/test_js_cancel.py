"""Cancellation that crosses the bridge (docs/protocol.md §15.4): a Node
caller's AbortSignal cancels a Python responder's task and a Python
in-process handler; a Python caller's task.cancel() aborts a Node handler's
ctx.signal; the server's deadline does the same; a handler that ignores the
cancel has its late answer dropped and counted; a request or stream
cancelled while it waits for a Node responder's handler slot never runs."""

from __future__ import annotations

import asyncio
import time

import pytest

from ipc_protocol import Message, RequestTimeout

from conftest import WAIT_S
from node_agent import NodeAgent


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


async def _one_slot_taken(server, node_agent, py_client):  # type: ignore[no-untyped-def]
    """A Node responder with one handler slot, taken by a gated request, and its caller."""
    agent = await node_agent(server.port, maxConcurrentHandlers=1)
    await agent.call("serve", channel="node.busy", kind="gated")
    await agent.call("serve", channel="node.work", kind="echo")
    await agent.call("serveStream", channel="node.gen", kind="endless")
    caller = await py_client(server.port)
    busy = asyncio.ensure_future(caller.request("node.busy", "busy", timeout=WAIT_S * 2))
    await agent.wait_event("served", lambda e: e["channel"] == "node.busy")
    return agent, caller, busy


async def _held(agent: NodeAgent) -> int:
    """The responder's held requests, once it has read what the server sent it
    before: its ping's answer comes behind any cancel on its connection."""
    await agent.call("system", action="ping")
    return int((await agent.call("info"))["heldMessages"])


async def _held_becomes(agent: NodeAgent, n: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while await _held(agent) != n:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("ended_by", ["cancel", "idle timeout"])
async def test_a_stream_ended_while_it_waits_for_a_node_handler_slot_never_runs(server, node_agent, py_client, ended_by):
    agent, caller, busy = await _one_slot_taken(server, node_agent, py_client)

    async def consume() -> None:
        async with caller.stream("node.gen", window=4, idle_timeout=0.3 if ended_by == "idle timeout" else None) as s:
            async for _ in s:
                pass

    consuming = asyncio.ensure_future(consume())
    await _held_becomes(agent, 1)
    if ended_by == "cancel":
        consuming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consuming
    else:  # the server's idle timeout answers timeout and cancels the producer (§15.5)
        with pytest.raises(RequestTimeout):
            await asyncio.wait_for(consuming, WAIT_S)
    await _held_becomes(agent, 0)  # dropped at the cancel: a stream has no deadline to expire by
    await agent.call("openGate", channel="node.busy")
    assert await asyncio.wait_for(busy, WAIT_S) == "busy"
    assert await caller.request("node.work", "after", timeout=WAIT_S) == "after"  # the slot is free, not held by the stream
    info = await agent.call("info")
    assert (info["runningHandlers"], info["heldMessages"]) == (0, 0)
    assert agent.count("producerPulled") == 0  # its generator never started


@pytest.mark.parametrize(
    ("keyed", "ended_by", "runs"),
    [(False, "cancel", False), (True, "deadline", False), (True, "cancel", True)],
    ids=["plain cancelled", "keyed past its deadline", "keyed cancelled by its requester"],
)
async def test_a_request_the_server_cancels_while_it_waits_for_a_node_handler_slot_never_runs(server, node_agent, py_client, keyed, ended_by, runs):
    """As in Python (Admission.drop_held): the server's cancel drops the held
    request. It sends none for a keyed request its requester cancels: the key's
    run goes on for a retry (docs/protocol.md §6.6 item 7), so that one runs."""
    agent, caller, busy = await _one_slot_taken(server, node_agent, py_client)
    options = {"idempotency_key": f"held-{ended_by}"} if keyed else {}
    call = asyncio.ensure_future(caller.request("node.work", "held", timeout=0.3 if ended_by == "deadline" else WAIT_S, **options))
    await _held_becomes(agent, 1)
    if ended_by == "cancel":
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await caller.system("stats"))["cancels"] == 1  # the server has taken the cancel
    else:
        with pytest.raises(RequestTimeout):
            await asyncio.wait_for(call, WAIT_S)
    if runs:
        assert await _held(agent) == 1
    else:
        await _held_becomes(agent, 0)  # at the cancel, not once the slot frees
    await agent.call("openGate", channel="node.busy")
    assert await asyncio.wait_for(busy, WAIT_S) == "busy"
    assert await caller.request("node.work", "after", timeout=WAIT_S) == "after"
    await agent.call("info")  # its answer comes on the agent's stdout behind every event it printed before
    served = [e["request"] for e in agent.events if e["event"] == "served" and e["channel"] == "node.work"]
    assert len(served) == (2 if runs else 1)  # "after", behind the held one when it ran
