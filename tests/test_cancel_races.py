"""A cancel that races its request's start (docs/protocol.md §15.4): read
together with the request, or while a handler thread makes a stream's
generator. The handler never runs (a generator it made is closed
unstreamed), its slot is freed and nothing stays running, in a Python
responder and in the server. Real loopback TCP: a bare requester writes a
request and its cancel in one write, so the server (on this loop) reads
them together and forwards both before the responder reads again."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ipc_protocol import Message, encode_frame
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame, until


async def requester(raw: Callable[[], Any]) -> RawPeer:
    peer: RawPeer = await raw()
    hello = {"action": "connect", "connection_id": "requester", "protocol": 2, "features": ["cancel", "streams"]}
    peer.send(frame("request", "system", hello, message_id="hello"))
    assert (await peer.recv()).payload["status"] == "connected"
    return peer


def request(channel: str, mid: str, **extra: Any) -> bytes:
    return encode_frame(json.dumps(frame("request", channel, None, message_id=mid, timeout_ms=WAIT_S * 4000, **extra)).encode())


def cancel(channel: str, mid: str) -> bytes:
    return encode_frame(json.dumps(frame("cancel", channel, {"reason": "cancelled"}, message_id=f"{mid}-cancel", reply_to=mid)).encode())


def closed(gen: Any) -> bool:
    return (gen.ag_frame if hasattr(gen, "ag_frame") else gen.gi_frame) is None


class Kinds:
    """Handlers of every kind that run until cancelled, noting that they ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.release = threading.Event()  # a plain handler's thread, once the test ends
        self.made: list[Any] = []
        self.live = 0  # generators started and not closed

    async def waits(self, msg: Message) -> None:
        self.ran.append("async")
        await asyncio.Event().wait()

    def blocks(self, msg: Message) -> None:
        self.ran.append("plain")
        self.release.wait(WAIT_S * 4)

    async def agen(self, msg: Message) -> AsyncIterator[int]:
        self.ran.append("async generator")
        self.live += 1
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            self.live -= 1

    def gen(self, msg: Message) -> Iterator[int]:
        self.ran.append("generator")
        self.live += 1
        try:
            yield from range(10**9)
        finally:
            self.live -= 1

    async def returns_gen(self, msg: Message) -> AsyncIterator[int]:  # never waits: run at once on 3.11, then a stream task
        made = self.agen(msg)
        self.made.append(made)
        return made


KINDS = {"async": ("waits", None), "plain": ("blocks", None), "async generator": ("agen", 4), "generator": ("gen", 4), "returned generator": ("returns_gen", 4)}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_responders_request_cancelled_in_the_same_read_never_runs_and_frees_its_slot(
    kind: str, server: IPCServer, make_client: Callable[..., Any], raw: Callable[[], Any]
) -> None:
    kinds = Kinds()
    name, window = KINDS[kind]
    responder = await make_client(reconnect=False, max_concurrent_handlers=1)
    await responder.serve("work", getattr(kinds, name))
    await responder.serve("echo", lambda msg: "echo")
    peer = await requester(raw)
    extra = {} if window is None else {"window": window}
    try:
        peer.send_raw(request("work", "w1", **extra) + cancel("work", "w1"))
        peer.send_raw(request("echo", "e1"))  # one slot: it runs only once the cancelled request freed it
        answer = await peer.recv()
        assert (answer.reply_to, answer.payload) == ("e1", "echo")
        producers, admission = responder._subs.producers, responder._admission
        await until(lambda: not admission.tasks and not producers.running and not producers.cancelled and len(producers) == 0)
        assert kinds.ran == [] and server.stats.cancels == 1
        assert all(closed(g) for g in kinds.made)
    finally:
        kinds.release.set()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are Python 3.12+")
async def test_a_cancel_in_the_same_read_stops_a_handler_started_eagerly(server: IPCServer, make_client: Callable[..., Any], raw: Callable[[], Any]) -> None:
    """An eager task factory runs the first step at creation: the handler
    has started and awaits when the cancel comes, which cancels it."""
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        stopped = asyncio.Event()

        async def waits(msg: Message) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                stopped.set()
                raise

        responder = await make_client(reconnect=False, max_concurrent_handlers=1)
        await responder.serve("work", waits)
        await responder.serve("echo", lambda msg: "echo")
        peer = await requester(raw)
        peer.send_raw(request("work", "w1") + cancel("work", "w1"))
        await asyncio.wait_for(stopped.wait(), WAIT_S)
        peer.send_raw(request("echo", "e1"))
        assert (await peer.recv()).reply_to == "e1"
        await until(lambda: not responder._admission.tasks and not responder._subs.producers.running)
    finally:
        loop.set_task_factory(None)


@pytest.mark.parametrize("kind", ["async generator", "generator"])
async def test_an_in_process_stream_cancelled_in_the_same_read_never_opens(kind: str, server: IPCServer, raw: Callable[[], Any]) -> None:
    """Its task has not started when the cancel is read (3.11), or, started
    in the read (3.12+), waits a turn before it makes the generator: the
    generator is never made. (On 3.12, before this fix, an async generator
    function was called in a thread the cancel could not stop, and its
    stream stayed open for as long as the requester did.)"""
    kinds = Kinds()
    server.add_handler("work", kinds.agen if kind == "async generator" else kinds.gen)
    peer = await requester(raw)
    peer.send_raw(request("work", "w1", window=4) + cancel("work", "w1"))
    await until(lambda: server.stats.cancels == 1 and not server._calls.calls)
    assert server.stats.streams == 0 and server.stats.stream_items == 0 and kinds.ran == [] and kinds.live == 0


@pytest.mark.parametrize("kind", ["async generator", "generator"])
async def test_a_cancel_while_a_plain_handlers_thread_makes_its_generator_closes_it_unstreamed(
    kind: str, server: IPCServer, raw: Callable[[], Any]
) -> None:
    """A plain handler runs in a thread, which a cancel cannot stop: the
    generator it returns afterwards is closed, never streamed, and the
    stream never opens (it would wait for credit, open, for as long as the
    requester stays connected)."""
    kinds = Kinds()
    loop = asyncio.get_running_loop()
    entered, go = asyncio.Event(), threading.Event()

    def makes(msg: Message) -> Any:
        loop.call_soon_threadsafe(entered.set)
        go.wait(WAIT_S)
        made = kinds.agen(msg) if kind == "async generator" else kinds.gen(msg)
        kinds.made.append(made)
        return made

    server.add_handler("work", makes)
    peer = await requester(raw)
    try:
        peer.send_raw(request("work", "w1", window=4))
        await asyncio.wait_for(entered.wait(), WAIT_S)
        peer.send_raw(cancel("work", "w1"))
        await until(lambda: server.stats.cancels == 1)
    finally:
        go.set()
    await until(lambda: not server._calls.calls)
    assert server.stats.streams == 0 and server.stats.streams_opened == 0 and server.stats.stream_items == 0
    assert len(kinds.made) == 1 and closed(kinds.made[0]) and kinds.ran == []


@pytest.mark.parametrize("where", ["server", "responder"])
async def test_an_async_generator_handler_needs_no_handler_thread(where: str, server: IPCServer, make_client: Callable[..., Any]) -> None:
    """Making its generator runs none of its code: it is called on the loop
    (a thread made it while a cancel could come and find no task to stop)."""
    kinds = Kinds()
    consumer = await make_client()
    if where == "server":
        server.add_handler("work", kinds.agen)
        threads: Any = server._calls.threads
    else:
        responder = await make_client()
        await responder.serve("work", kinds.agen)
        threads = responder._admission.threads
    got = []
    async with consumer.stream("work", None, window=4) as items:
        async for item in items:
            got.append(item)
            if len(got) == 3:
                break
    assert got == [0, 1, 2] and len(threads) == 0
