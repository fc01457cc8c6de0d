"""Streams over real loopback TCP, Python to Python (docs/protocol.md
§15.2, §15.1): flow control that never holds up other traffic, credit
and item sizes enforced, and the feature's negotiation (the rest of
streams: tests/test_streams.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import FrameTooLarge, HandlerError, Message, RemoteError
from ipc_server import IPCServer

from .conftest import WAIT_S
from .test_streams import collect, pair, until  # noqa: F401 - pair is a fixture


# -- flow control ----------------------------------------------------------------------------


async def test_a_window_given_as_an_integral_float_counts_as_its_integer(pair: tuple[IPCClient, IPCClient]) -> None:
    """As on the wire (docs/protocol.md §1.2) and in Node, whose numbers
    cannot tell 2.0 from 2; a fraction, NaN, infinity or a bool is refused
    with the error an integer out of range gets."""
    consumer, producer = pair
    windows: list[Any] = []

    def count(msg: Message) -> Any:
        windows.append(msg.window)
        return (i for i in range(5))

    await producer.serve("count", count)
    assert await collect(consumer.stream("count", window=2.0)) == [0, 1, 2, 3, 4]
    assert windows == [2] and type(windows[0]) is int  # sent as 2
    for bad in (2.5, float("nan"), float("inf"), True, 0.0, 2.0**31):
        with pytest.raises(ValueError, match=r"^window must be an integer from 1 to 2147483647, got "):
            consumer.stream("count", window=bad)


async def test_a_stalled_stream_holds_up_nothing_else(server: IPCServer, pair: tuple[IPCClient, IPCClient]) -> None:
    consumer, producer = pair
    pulled = 0
    window = 16

    async def endless(msg: Message) -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield "x" * 100

    await producer.serve("endless", endless)
    await producer.serve("echo", lambda msg: msg.payload)
    await consumer.serve("echo.back", lambda msg: msg.payload)
    stream = consumer.stream("endless", window=window)
    await stream.__anext__()  # one taken, then the loop stops reading
    await until(lambda: pulled == window)
    # Both connections carry other traffic at full speed meanwhile, both ways.
    results = await asyncio.wait_for(
        asyncio.gather(*(consumer.request("echo", i) for i in range(200)), *(producer.request("echo.back", i) for i in range(200))), WAIT_S
    )
    assert results == list(range(200)) * 2
    assert pulled == window  # and the producer is still held at its credit
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_producer_beyond_its_credit_fails_the_stream(server: IPCServer, make_client: Callable[..., Any], raw: Callable[[], Any]) -> None:
    from .conftest import frame

    consumer = await make_client()
    peer = await raw()
    peer.send(frame("request", "system", {"action": "connect", "connection_id": "p", "protocol": 2, "features": ["cancel", "streams"]}, message_id="hello"))
    assert (await peer.recv()).payload["features"] == ["cancel", "streams"]
    peer.send(frame("subscribe", "greedy", {"serve": True}, message_id="sub"))
    await peer.recv()
    got: list[int] = []

    async def consume() -> None:
        async for item in consumer.stream("greedy", window=2):
            got.append(item)

    task = asyncio.ensure_future(consume())
    request = await peer.recv()
    assert request.window == 2
    for i in range(3):  # one more than granted
        peer.send(frame("stream_item", "greedy", i, message_id=f"i{i}", reply_to=request.message_id))
    with pytest.raises(RemoteError, match="beyond the credit") as info:
        await asyncio.wait_for(task, WAIT_S)
    assert info.value.code == "bad_message"
    stop = await peer.recv_until(lambda m: m.message_type.value == "cancel")
    assert stop.reply_to == request.message_id and stop.payload == {"reason": "bad_message"}


async def test_an_item_larger_than_the_consumer_accepts_fails_the_stream(server: IPCServer, make_client: Callable[..., Any]) -> None:
    closed = asyncio.Event()

    @server.handler("big")
    async def big(msg: Message) -> AsyncIterator[str]:
        try:
            yield "small"
            yield "x" * 5000
        finally:
            closed.set()

    consumer = await make_client(max_frame_size=2048)
    got: list[str] = []
    # too_large, as for a responder's item (§15.3 item 5): not the handler's failure (handler_error)
    with pytest.raises(RemoteError, match="larger than the consumer accepts") as info:
        async for item in consumer.stream("big"):
            got.append(item)
    assert info.value.code == "too_large" and isinstance(info.value, FrameTooLarge) and not isinstance(info.value, HandlerError)
    assert got == ["small"]
    await asyncio.wait_for(closed.wait(), WAIT_S)
    assert await consumer.health_check() is True


# -- negotiation -------------------------------------------------------------------------------


async def test_a_connection_without_the_feature_is_refused_a_stream(server: IPCServer, raw: Callable[[], Any]) -> None:
    from .conftest import frame

    peer = await raw()
    reply = await peer.handshake()
    assert "features" not in reply.payload
    peer.send(frame("request", "anything", None, message_id="s1", window=8))
    refusal = await peer.recv()
    assert (refusal.reply_to, refusal.error.code) == ("s1", "bad_message")
    assert "streams were not negotiated" in refusal.error.message
    peer.send(frame("cancel", "anything", None, message_id="c1", reply_to="s1"))
    assert (await peer.recv()).error.code == "bad_message"
    peer.send(frame("request", "system", {"action": "ping"}, message_id="p1"))
    assert (await peer.recv()).payload == {"status": "pong"}  # still open


async def test_against_a_server_without_streams_a_stream_is_one_request(make_client: Callable[..., Any], server: IPCServer) -> None:
    server.add_handler("plain", lambda msg: [1, 2, 3])
    client = await make_client()
    client._link.conn.proto.features = frozenset()  # type: ignore[union-attr]  # as an older server grants
    assert await collect(client.stream("plain")) == [[1, 2, 3]]
