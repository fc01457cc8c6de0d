"""Binary attachments through the real server on loopback TCP (docs/protocol.md
§16.4, §16.5): peers without ``binary`` (a raw client, a version-2 client
that does not ask, the real legacy 1.1.2 client) get the tagged base64 form;
binary frames are refused where they are not granted; frames too large once
downgraded meet §12.3; in-process handlers get and answer bytes; a backed-up
binary subscriber gets every frame whole; the stats count it all."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ipc_framework import FrameworkClient

from ipc_client import IPCClient
from ipc_protocol import Message, MessageType, RemoteError, encode_frame, encode_message
from ipc_protocol.attachments import BinaryFrame
from ipc_protocol.envelope import encode_message_parts
from ipc_protocol.framing import frame_parts
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame

LEGACY_KEYS = {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"}


@pytest.fixture
async def server() -> AsyncIterator[IPCServer]:
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.5) as srv:

        @srv.handler("blob.echo")
        async def echo(msg: Message) -> Any:
            assert all(type(v) is bytes for v in _leaves(msg.payload) if not isinstance(v, (str, int, type(None))))
            return {"got": msg.payload, "types": sorted({type(v).__name__ for v in _leaves(msg.payload)})}

        @srv.handler("blob.make")
        def make(msg: Message) -> Any:  # a sync handler, in a worker thread
            return {"data": bytes(range(256)) * (msg.payload["kib"] * 4), "name": "x"}

        @srv.handler("blob.chunks")
        async def chunks(msg: Message) -> Any:
            for i in range(msg.payload["n"]):
                yield {"i": i, "chunk": bytes([i]) * 1000}

        yield srv


@pytest.fixture
async def peers(server: IPCServer) -> AsyncIterator[Any]:
    made: list[Any] = []

    async def raw(features: list[str] | None = None, **connect: Any) -> RawPeer:
        peer = await RawPeer.open(server.port)
        made.append(peer)
        payload: dict[str, Any] = {"action": "connect", "connection_id": "raw", "protocol": 2, **connect}
        if features is not None:
            payload["features"] = features
        peer.send(frame("request", "system", payload, message_id="hello"))
        reply = await peer.recv()
        assert reply.payload["status"] == "connected"
        return peer

    async def client(**options: Any) -> IPCClient:
        c = IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S, **options)
        made.append(c)
        await c.connect()
        return c

    yield raw, client
    for p in made:
        await (p.close() if isinstance(p, RawPeer) else p.disconnect())


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def b64(data: bytes) -> dict[str, str]:
    return {"$base64": base64.b64encode(data).decode()}


async def stats(client: IPCClient) -> dict[str, Any]:
    return await client.request("system", {"action": "stats"})  # type: ignore[no-any-return]


async def subscribed(peer: RawPeer, channel: str) -> None:
    peer.send(frame("subscribe", channel, message_id=f"sub-{channel}"))
    ack = await peer.recv_until(lambda m: m.reply_to == f"sub-{channel}")
    assert ack.payload == {"status": "subscribed"}


# -- peers without binary: the tagged base64 form (§16.5) ---------------------------------------


async def test_a_publish_reaches_binary_and_plain_subscribers_each_in_its_form(server: IPCServer, peers: Any) -> None:
    raw, client = peers
    plain_a, plain_b, asked = await raw(), await raw(["cancel", "streams"]), await raw(["binary"])
    subscriber = await client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await subscriber.subscribe("cam.*", lambda m: got.put_nowait(m.payload))
    for peer in (plain_a, plain_b, asked):
        await subscribed(peer, "cam.*")
    publisher = await client()
    image = os.urandom(100_000)
    delivered = await publisher.publish("cam.1", {"image": image, "meta": [memoryview(b"m"), 1]}, ack=True)
    assert delivered == 4
    assert await asyncio.wait_for(got.get(), WAIT_S) == {"image": image, "meta": [b"m", 1]}
    for peer in (plain_a, plain_b):
        msg = await peer.recv_until(lambda m: m.message_type is MessageType.PUBLISH)
        assert msg.attachments is None  # a JSON frame
        assert msg.payload == {"image": b64(image), "meta": [b64(b"m"), 1]}
    msg = await asked.recv_until(lambda m: m.message_type is MessageType.PUBLISH)
    assert msg.attachments == [["image"], ["meta", 0]] and msg.payload == {"image": image, "meta": [b"m", 1]}
    figures = await stats(publisher)
    assert figures["binary_frames"] >= 1 and figures["attachments_downgraded"] == 4  # 2 attachments x 2 plain peers


async def test_a_plain_requester_gets_an_in_process_handlers_bytes_tagged(peers: Any) -> None:
    raw, _ = peers
    peer = await raw()
    peer.send(frame("request", "blob.make", {"kib": 1}, message_id="q1"))
    answer = await peer.recv_until(lambda m: m.reply_to == "q1")
    assert answer.error is None and answer.payload == {"data": b64(bytes(range(256)) * 4), "name": "x"}


async def test_the_tagged_form_is_not_converted_back(peers: Any) -> None:
    """A {"$base64": ...} a peer sends is user JSON, delivered as it is."""
    raw, client = peers
    peer = await raw()
    peer.send(frame("request", "blob.echo", {"x": b64(b"abc")}, message_id="q2"))
    answer = await peer.recv_until(lambda m: m.reply_to == "q2")
    assert answer.payload["got"] == {"x": b64(b"abc")}


async def test_a_responders_bytes_reach_a_plain_requester_tagged(peers: Any) -> None:
    raw, client = peers
    responder = await client()
    await responder.serve("blob.rev", lambda msg: {"rev": msg.payload[::-1]})
    peer = await raw()
    peer.send(frame("request", "blob.rev", "plain text", message_id="q3"))
    answer = await peer.recv_until(lambda m: m.reply_to == "q3")
    assert answer.payload == {"rev": "txet nialp"}
    requester = await client()
    assert await requester.request("blob.rev", b"\x01\x02") == {"rev": b"\x02\x01"}


async def test_a_stream_of_chunks_reaches_a_plain_consumer_tagged(peers: Any) -> None:
    raw, _ = peers
    peer = await raw(["cancel", "streams"])
    peer.send(frame("request", "blob.chunks", {"n": 3}, message_id="s1", window=8))
    items = []
    while True:
        msg = await peer.recv_until(lambda m: m.reply_to == "s1")
        if msg.message_type is MessageType.STREAM_END:
            break
        items.append(msg.payload)
    assert items == [{"i": i, "chunk": b64(bytes([i]) * 1000)} for i in range(3)]


async def test_the_real_legacy_client_gets_the_tagged_form_with_version_1_fields(server: IPCServer, peers: Any) -> None:
    _, client = peers
    legacy = FrameworkClient("app", host="127.0.0.1", port=server.port, connection_timeout=WAIT_S)
    frames: list[dict[str, Any]] = []
    receive = legacy._receive_message

    def recording() -> str | None:
        data = receive()
        if data is not None:
            frames.append(json.loads(data))
        return data

    legacy._receive_message = recording  # type: ignore[method-assign]
    try:
        assert await asyncio.wait_for(asyncio.to_thread(legacy.connect), WAIT_S) is True
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        legacy.subscribe("files", lambda msg: loop.call_soon_threadsafe(inbox.put_nowait, msg.payload))
        assert await asyncio.wait_for(asyncio.to_thread(legacy.ping), WAIT_S) is True  # the subscribe is in
        publisher = await client()
        await publisher.publish("files", {"pdf": b"%PDF-1.7\x00\xff", "pages": 10})
        assert await asyncio.wait_for(inbox.get(), WAIT_S) == {"pdf": b64(b"%PDF-1.7\x00\xff"), "pages": 10}
        answer = await asyncio.wait_for(asyncio.to_thread(legacy.send_request, "blob.make", {"kib": 1}, timeout=WAIT_S), 2 * WAIT_S)
        assert answer is not None and answer.payload == {"data": b64(bytes(range(256)) * 4), "name": "x"}
        assert frames and all(set(f) == LEGACY_KEYS for f in frames)
    finally:
        if legacy.socket is not None:
            with contextlib.suppress(OSError):
                legacy.socket.shutdown(socket.SHUT_RDWR)
        await asyncio.to_thread(legacy.disconnect)


# -- refusals (§16.1, §16.2) ------------------------------------------------------------------


def binary_request(message_id: str, payload: Any, channel: str = "blob.echo", mtype: MessageType = MessageType.REQUEST) -> bytes:
    return bytes(frame_parts(encode_message_parts(Message.build(mtype, "app", channel, payload, message_id=message_id))))


@pytest.mark.parametrize("mtype", [MessageType.REQUEST, MessageType.NOTIFICATION, MessageType.PUBLISH])
async def test_a_binary_frame_without_the_grant_is_refused_and_the_connection_stays(peers: Any, mtype: MessageType) -> None:
    raw, _ = peers
    peer = await raw(["cancel", "streams"])
    peer.send_raw(binary_request("b1", {"d": b"x"}, mtype=mtype))
    refusal = await peer.recv_until(lambda m: m.reply_to == "b1")
    assert refusal.error is not None and refusal.error.code == "bad_message" and "binary" in refusal.error.message
    peer.send(frame("request", "system", {"action": "ping"}, message_id="p"))
    assert (await peer.recv_until(lambda m: m.reply_to == "p")).payload == {"status": "pong"}


async def test_bad_paths_are_refused_and_a_broken_layout_closes(peers: Any) -> None:
    raw, _ = peers
    peer = await raw(["binary"])
    envelope = b'{"message_id":"b2","app_id":"app","channel_id":"blob.echo","message_type":"request","payload":{"d":7},"attachments":[["d"]]}'
    peer.send_raw(bytes(frame_parts(b"\x00" + struct.pack(">III", len(envelope), 1, 1) + envelope + b"z")))
    refusal = await peer.recv_until(lambda m: m.reply_to == "b2")
    assert refusal.error is not None and refusal.error.code == "bad_message" and "does not lead to a null" in refusal.error.message
    peer.send_raw(binary_request("b3", {"d": b"ok"}))  # still open, still granted
    assert (await peer.recv_until(lambda m: m.reply_to == "b3")).payload["got"] == {"d": b"ok"}
    body = b"\x00" + struct.pack(">III", 2, 1, 50) + b"{}" + b"short"
    peer.send_raw(len(body).to_bytes(4, "big") + body)
    last = await peer.closed()
    assert last and last[-1].error is not None and last[-1].error.code == "bad_frame"


# -- limits (§1, §12.3) -----------------------------------------------------------------------


async def test_a_binary_frame_at_the_servers_limit_is_read_and_one_byte_more_is_not() -> None:
    limit = 64 * 1024
    async with IPCServer("127.0.0.1", 0, max_frame_size=limit) as srv:
        srv.add_handler("blob.size", lambda msg: len(msg.payload))
        peer = await RawPeer.open(srv.port)
        try:
            peer.send(frame("request", "system", {"action": "connect", "connection_id": "r", "protocol": 2, "features": ["binary"]}, message_id="h"))
            await peer.recv()
            head = Message.build(MessageType.REQUEST, "app", "blob.size", b"", message_id="L")
            empty = bytes(encode_message_parts(head))
            data = b"\xab" * (limit - len(empty))
            body = bytes(encode_message_parts(head.model_copy(update={"payload": data})))
            assert len(body) == limit
            peer.send_raw(len(body).to_bytes(4, "big") + body)
            assert (await peer.recv_until(lambda m: m.reply_to == "L")).payload == len(data)
            over = bytes(encode_message_parts(head.model_copy(update={"payload": data + b"!"})))
            peer.send_raw(len(over).to_bytes(4, "big") + over)
            last = await peer.closed()
            assert last[-1].error is not None and last[-1].error.code == "too_large"
        finally:
            await peer.close()


async def test_a_frame_too_large_once_tagged_is_handled_as_any_frame_too_large(peers: Any) -> None:
    """900 bytes fit a 1000-byte limit; their base64 (1200) does not: the
    answer becomes too_large, the publish is skipped for that peer (§12.3)."""
    raw, client = peers
    plain = await raw(max_frame_size=1000)
    granted = await raw(["binary"], max_frame_size=1400)
    plain.send(frame("request", "blob.echo", {"d": "x" * 10}, message_id="ok"))
    assert (await plain.recv_until(lambda m: m.reply_to == "ok")).error is None
    blob = await client()
    await blob.serve("blob.900", lambda msg: b"\x00" * 900)
    for peer in (plain, granted):
        peer.send(frame("request", "blob.900", None, message_id="big"))
    refused = await plain.recv_until(lambda m: m.reply_to == "big")
    assert refused.error is not None and refused.error.code == "too_large"
    assert (await granted.recv_until(lambda m: m.reply_to == "big")).payload == b"\x00" * 900
    await subscribed(plain, "news")
    await subscribed(granted, "news")
    assert await blob.publish("news", b"\x01" * 900, ack=True) == 1  # the plain peer's skipped
    assert (await granted.recv_until(lambda m: m.message_type is MessageType.PUBLISH)).payload == b"\x01" * 900
    figures = await stats(blob)
    assert figures["frames_skipped"] >= 2


async def test_a_binary_answer_over_the_requesters_own_limit_is_too_large(peers: Any) -> None:
    _, client = peers
    small = await client(max_frame_size=200_000)
    with pytest.raises(RemoteError) as caught:
        await small.request("blob.make", {"kib": 256})
    assert caught.value.code == "too_large"
    assert (await small.request("blob.make", {"kib": 1}))["data"] == bytes(range(256)) * 4


# -- in-process handlers, streams (§16.4, §15.6) ------------------------------------------------


async def test_in_process_handlers_get_bytes_and_answer_bytes(peers: Any) -> None:
    _, client = peers
    c = await client()
    payload = {"a": b"1", "b": [bytearray(b"22"), {"c": memoryview(b"333")}], "n": 4}
    answer = await c.request("blob.echo", payload)
    assert answer == {"got": {"a": b"1", "b": [b"22", {"c": b"333"}], "n": 4}, "types": ["bytes", "int"]}
    big = await c.request("blob.make", {"kib": 2048})
    assert big["data"] == bytes(range(256)) * 8192
    assert [item async for item in c.stream("blob.chunks", {"n": 5})] == [{"i": i, "chunk": bytes([i]) * 1000} for i in range(5)]


# -- a backed-up binary subscriber (§12.2) ------------------------------------------------------


async def test_a_slow_binary_subscriber_gets_every_large_frame_whole(server: IPCServer, peers: Any) -> None:
    raw, client = peers
    slow = await raw(["binary"])
    await subscribed(slow, "video")
    slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
    publisher = await client()
    chunks = [os.urandom(3 * 1024 * 1024 + i) for i in range(4)]
    for i, chunk in enumerate(chunks):
        await publisher.publish("video", {"seq": i, "chunk": chunk})
    await publisher.request("system", {"action": "ping"})  # every publish is in
    slow.writer.transport.resume_reading()  # type: ignore[attr-defined]
    got = [await slow.recv_until(lambda m: m.message_type is MessageType.PUBLISH, timeout=4 * WAIT_S) for _ in chunks]
    assert [m.payload for m in got] == [{"seq": i, "chunk": c} for i, c in enumerate(chunks)]


def test_the_frames_the_server_writes_from_buffers_are_the_frames_encoded() -> None:
    """What ``binary_frames`` writes part by part is byte for byte the joined frame."""
    msg = Message.build(MessageType.PUBLISH, "app", "c", {"a": os.urandom(70_000), "b": b""})
    parts = frame_parts(encode_message_parts(msg))
    assert isinstance(parts, BinaryFrame) and len(parts.parts) == 3
    assert b"".join(parts.parts) == encode_frame(encode_message(msg))
