"""Credit over real loopback TCP, from raw frames (docs/protocol.md §15.3):
a grant sent right behind its stream request, in the same write, counts
wherever the stream runs (an in-process handler, a Python responder; a Node
responder: interop-tests/test_js_stream_pacing.py), one past 2^31-1
fails the stream, and which invalid credits close the connection (§6.4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ipc_protocol import Message, encode_frame
from ipc_protocol.streams import MAX_WINDOW
from ipc_server import IPCServer

from .conftest import RawPeer, frame
from .test_streams import until

FEATURES = {"action": "connect", "connection_id": "raw", "protocol": 2, "features": ["cancel", "streams"]}


def frames(*objs: dict[str, Any]) -> bytes:
    """Several frames in one write."""
    return b"".join(encode_frame(json.dumps(obj).encode()) for obj in objs)


async def streaming_peer(raw: Callable[[], Any]) -> RawPeer:
    peer: RawPeer = await raw()
    peer.send(frame("request", "system", FEATURES, message_id="hello"))
    assert (await peer.recv()).payload["features"] == ["cancel", "streams"]
    return peer


async def read_stream(peer: RawPeer, request_id: str, timeout: float = 3.0) -> tuple[list[Any], Message]:
    """The items of a stream, then what ended it."""
    items = []
    while True:
        msg = await peer.recv_until(lambda m: m.reply_to == request_id, timeout=timeout)
        if msg.message_type.value != "stream_item":
            return items, msg
        items.append(msg.payload)


def open_with_credit(channel: str, payload: Any, window: float, grant: float, request_id: str = "s1") -> bytes:
    return frames(
        frame("request", channel, payload, message_id=request_id, window=window, idle_timeout_ms=1000),
        frame("credit", channel, None, message_id=f"{request_id}.c", reply_to=request_id, window=grant),
    )


def counting(pulled: list[int]) -> Callable[[Message], AsyncIterator[int]]:
    async def count(msg: Message) -> AsyncIterator[int]:
        for i in range(msg.payload):
            pulled.append(i)
            yield i

    return count


def counting_sync(msg: Message) -> Iterator[int]:
    yield from range(msg.payload)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_credit_right_behind_the_request_counts_in_process(server: IPCServer, raw: Callable[[], Any], kind: str) -> None:
    server.add_handler("count", counting([]) if kind == "async" else counting_sync)
    peer = await streaming_peer(raw)
    peer.send_raw(open_with_credit("count", 4, window=1, grant=5))
    items, end = await read_stream(peer, "s1")  # without the grant: one item, then a stall
    assert (items, end.message_type.value, end.error) == ([0, 1, 2, 3], "stream_end", None)
    await until(lambda: server.stats.streams == 0 and not server._streams._local)


async def test_a_credit_right_behind_the_request_counts_at_a_python_responder(server: IPCServer, make_client: Callable[..., Any], raw: Callable[[], Any]) -> None:
    producer = await make_client()
    await producer.serve("count", counting([]))
    peer = await streaming_peer(raw)
    peer.send_raw(open_with_credit("count", 4, window=1, grant=5))
    items, end = await read_stream(peer, "s1")  # without it, the producer waits while the server counts 5: an idle timeout
    assert (items, end.message_type.value, end.error) == ([0, 1, 2, 3], "stream_end", None)
    await until(lambda: not producer._subs.producers._producing)


async def test_a_python_responder_counts_credit_while_the_request_waits_for_a_handler_slot(server: IPCServer, make_client: Callable[..., Any], raw: Callable[[], Any]) -> None:
    producer = await make_client(max_concurrent_handlers=1)
    release = asyncio.Event()

    async def busy(msg: Message) -> str:
        await release.wait()
        return "done"

    await producer.serve("busy", busy)
    await producer.serve("count", counting([]))
    peer = await streaming_peer(raw)
    peer.send(frame("request", "busy", None, message_id="b1", timeout_ms=5000))
    await until(lambda: producer._subs.producers.running)
    peer.send_raw(open_with_credit("count", 4, window=1, grant=5))  # held: the one slot is busy
    await until(lambda: producer._admission.held)
    release.set()
    items, end = await read_stream(peer, "s1")
    assert (items, end.message_type.value) == ([0, 1, 2, 3], "stream_end")


async def test_a_grant_past_the_maximum_right_behind_the_request_fails_the_stream(server: IPCServer, raw: Callable[[], Any]) -> None:
    pulled: list[int] = []
    server.add_handler("count", counting(pulled))
    peer = await streaming_peer(raw)
    peer.send_raw(open_with_credit("count", 10, window=2, grant=MAX_WINDOW - 1))
    items, end = await read_stream(peer, "s1")
    assert end.error is not None and (end.error.code, end.error.message) == ("bad_message", "credit granted past 2^31-1 items")
    assert len(items) <= 2 and len(pulled) <= 2
    peer.send(frame("request", "system", {"action": "ping"}, message_id="p1"))
    assert (await peer.recv_until(lambda m: m.reply_to == "p1")).payload == {"status": "pong"}  # the connection stays open
    await until(lambda: server.stats.streams == 0 and not server._streams._local and not server._calls.calls)


# -- a window written as an integral float (§1.2) ------------------------------------------------


@pytest.mark.parametrize("where", ["in-process", "python-responder"])
async def test_a_window_written_as_an_integral_float_counts_as_its_integer(
    server: IPCServer, make_client: Callable[..., Any], raw: Callable[[], Any], where: str
) -> None:
    """JSON.parse cannot tell 5.0 from 5, so a Node peer takes either: the
    server, and a Python responder behind it, take 1.0 and 5.0 as 1 and 5
    rather than closing the connection ``bad_message``."""
    if where == "in-process":
        server.add_handler("count", counting([]))
    else:
        producer = await make_client()
        await producer.serve("count", counting([]))
    peer = await streaming_peer(raw)
    peer.send_raw(open_with_credit("count", 4, window=1.0, grant=5.0))
    items, end = await read_stream(peer, "s1")  # without the grant: one item, then a stall
    assert (items, end.message_type.value, end.error) == ([0, 1, 2, 3], "stream_end", None)
    peer.send(frame("request", "system", {"action": "ping"}, message_id="p1"))
    assert (await peer.recv_until(lambda m: m.reply_to == "p1")).payload == {"status": "pong"}  # the connection stays open


# -- invalid credit (§6.4) ----------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, -1, 1.5, "5", True, 2**31], ids=["zero", "negative", "fraction", "string", "bool", "too-large"])
async def test_a_credit_whose_window_breaks_the_envelope_closes_the_connection(server: IPCServer, raw: Callable[[], Any], window: Any) -> None:
    """Like any envelope that breaks §2's table: ``bad_message``, then the close."""
    closed = asyncio.Event()

    @server.handler("endless")
    async def endless(msg: Message) -> AsyncIterator[int]:
        try:
            while True:
                yield 0
        finally:
            closed.set()

    peer = await streaming_peer(raw)
    peer.send(frame("request", "endless", None, message_id="s1", window=2))
    for _ in range(2):  # the stream runs, and waits for credit
        assert (await peer.recv()).message_type.value == "stream_item"
    peer.send(frame("credit", "endless", None, message_id="c1", reply_to="s1", window=window))
    got = await peer.closed()
    assert [(m.reply_to, m.error.code if m.error else None) for m in got] == [("c1", "bad_message")]
    await asyncio.wait_for(closed.wait(), 3.0)  # the connection's streams end with it


async def test_a_credit_without_window_is_refused_and_the_connection_stays_open(server: IPCServer, raw: Callable[[], Any]) -> None:
    """A well-formed envelope that breaks a rule of §15.2: refused, nothing closes."""
    server.add_handler("count", counting([]))
    peer = await streaming_peer(raw)
    peer.send(frame("request", "count", 4, message_id="s1", window=2))
    peer.send(frame("credit", "count", None, message_id="c1", reply_to="s1"))
    refusal = await peer.recv_until(lambda m: m.reply_to == "c1")
    assert refusal.error is not None and refusal.error.code == "bad_message"
    peer.send(frame("credit", "count", None, message_id="c2", reply_to="s1", window=3))  # the end takes a pull too
    items, end = await read_stream(peer, "s1")
    assert (items, end.message_type.value) == ([0, 1, 2, 3], "stream_end")
