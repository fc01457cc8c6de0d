"""The Python client with binary payloads over loopback TCP against the
real server (docs/protocol.md §16.3): bytes, bytearray and memoryview
anywhere in requests, answers of served handlers, publish, notify and
stream items, received as bytes; the frame limit checked before sending;
the clients built on IPCClient (pool, load-balanced, service, sync); and a
server that does not speak ``binary`` (the real 1.1.2 server) getting the
tagged base64 form."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ipc_framework import FrameworkServer
from ipc_framework.core import MessageType as LegacyType

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient, ServiceClient, SyncIPCClient
from ipc_client.coalescing import request_key
from ipc_protocol import FrameTooLarge, Message, envelope
from ipc_server import IPCServer

from .conftest import WAIT_S

LIMIT = 256 * 1024
SIZES = [0, 1, 1000, 100_000]


@pytest.fixture
async def server() -> AsyncIterator[IPCServer]:
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.5, max_frame_size=LIMIT) as srv:
        srv.add_handler("local.echo", lambda msg: msg.payload)
        yield srv


@pytest.fixture
async def clients(server: IPCServer) -> AsyncIterator[Any]:
    made: list[IPCClient] = []

    async def make(**options: Any) -> IPCClient:
        c = IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S, **options)
        made.append(c)
        await c.connect()
        return c

    yield make
    for c in made:
        await c.disconnect()


def echo(msg: Message) -> Any:
    return msg.payload


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("size", SIZES)
async def test_every_binary_type_round_trips_through_a_responder_as_bytes(clients: Any, kind: type, size: int) -> None:
    requester, responder = await clients(), await clients()
    await responder.serve("echo", echo)
    data = os.urandom(size)
    value = kind(data)
    answer = await requester.request("echo", value)
    assert answer == data and type(answer) is bytes
    nested = await requester.request("echo", {"a": [1, {"b": value}], "c": (value, "s"), "d": None})
    assert nested == {"a": [1, {"b": data}], "c": [data, "s"], "d": None}
    assert await requester.request("local.echo", {"x": value}) == {"x": data}


async def test_a_served_handler_answers_bytes_of_every_type(clients: Any) -> None:
    requester, responder = await clients(), await clients()
    await responder.serve("make", lambda msg: {"b": b"1", "ba": bytearray(b"22"), "mv": memoryview(b"333"), "list": [b"", b"4"]})
    assert await requester.request("make") == {"b": b"1", "ba": b"22", "mv": b"333", "list": [b"", b"4"]}


async def test_publish_and_notify_carry_bytes(clients: Any) -> None:
    publisher, subscriber, responder = await clients(), await clients(), await clients()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await subscriber.subscribe("img.*", lambda msg: got.put_nowait(msg.payload))
    await responder.serve("log", lambda msg: got.put_nowait(("notified", msg.payload)))
    await publisher.publish("img.png", {"png": bytearray(b"\x89PNG"), "w": 1})
    await publisher.notify("log", [memoryview(b"line")])
    received = {repr(await asyncio.wait_for(got.get(), WAIT_S)) for _ in range(2)}
    assert received == {repr({"png": b"\x89PNG", "w": 1}), repr(("notified", [b"line"]))}


async def test_stream_items_carry_bytes_both_ways(clients: Any) -> None:
    consumer, producer = await clients(), await clients()

    async def chunks(msg: Message) -> AsyncIterator[Any]:
        data = msg.payload["data"]
        for i in range(0, len(data), 1000):
            yield {"at": i, "chunk": data[i : i + 1000]}

    await producer.serve("chunks", chunks)
    data = os.urandom(10_500)
    items = [item async for item in consumer.stream("chunks", {"data": data})]
    assert b"".join(item["chunk"] for item in items) == data and all(type(i["chunk"]) is bytes for i in items)


async def test_a_frame_at_the_limit_goes_and_one_byte_over_is_refused_before_sending(clients: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few bytes under the limit goes, a few over is refused. The
    envelope's timestamp is fixed here: its text is 10 to 18 characters
    long from one call to the next, more than the margins."""
    monkeypatch.setattr(envelope, "time", types.SimpleNamespace(time=lambda: 1796665914.125))
    requester, responder = await clients(), await clients()
    await responder.serve("size", lambda msg: len(msg.payload["d"]))
    probe = requester._link.conn.frame_body
    overhead = len(probe(_body({"d": b""}))) - 4
    assert await requester.request("size", {"d": b"\x00" * (LIMIT - overhead - 4)}) == LIMIT - overhead - 4
    with pytest.raises(FrameTooLarge):
        await requester.request("size", {"d": b"\x00" * (LIMIT - overhead + 4)})
    assert await requester.request("size", {"d": b"ok"}) == 2  # the connection is intact


def _body(payload: Any) -> Any:
    from ipc_protocol.envelope import encode_request_parts

    return encode_request_parts("app", "size", payload, timeout_ms=5000, headers={"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"})[1]


async def test_the_clients_built_on_ipc_client_carry_bytes(server: IPCServer, clients: Any) -> None:
    responder = await clients()
    await responder.serve("echo", echo)
    data = os.urandom(5000)
    async with ConnectionPool("app", "127.0.0.1", server.port, max_connections=2) as pool:
        assert await pool.request("echo", {"d": data}) == {"d": data}
    lb = LoadBalancedClient("app", [("127.0.0.1", server.port)])
    await lb.start()
    try:
        assert await lb.request("echo", [data]) == [data]
    finally:
        await lb.close()
    gateway = ServiceClient({"files": {"host": "127.0.0.1", "port": server.port, "app_id": "app"}})
    await gateway.start()
    try:
        assert await gateway.request("files", "echo", bytearray(data)) == data
    finally:
        await gateway.shutdown()
    sync = SyncIPCClient("app", "127.0.0.1", server.port)
    try:
        await asyncio.to_thread(sync.connect)
        assert await asyncio.to_thread(sync.request, "echo", {"m": memoryview(data)}) == {"m": data}
    finally:
        await asyncio.to_thread(sync.disconnect)


def test_coalescing_keys_tell_bytes_apart() -> None:
    assert request_key("c", {"d": b"ab"}) != request_key("c", {"d": "ab"})
    assert request_key("c", {"d": b"ab"}) == request_key("c", {"d": bytearray(b"ab")})
    assert request_key("c", {"d": b"ab"}) != request_key("c", {"d": b"ac"})


# -- a server without binary: the real 1.1.2 server --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_server_without_binary_gets_the_tagged_form() -> None:
    legacy = FrameworkServer(host="127.0.0.1", port=_free_port())
    await asyncio.wait_for(asyncio.to_thread(legacy.start), WAIT_S)
    seen: list[Any] = []

    def handler(msg: Any) -> None:
        seen.append(msg.payload)
        conn = legacy.connection_manager.get_connection(msg.payload["connection_id"])
        legacy.send_to_connection(conn, msg.create_response({"echo": msg.payload.get("value")}))

    legacy.create_application("app").create_channel("x").set_handler(LegacyType.REQUEST, handler)
    client = IPCClient("app", "127.0.0.1", legacy.port, reconnect=False, request_timeout=WAIT_S)
    try:
        await asyncio.wait_for(client.connect(), WAIT_S)
        answer = await client.request("x", {"value": b"\x00\x01", "connection_id": client.connection_id})
        tagged = {"$base64": base64.b64encode(b"\x00\x01").decode()}
        assert answer == {"echo": tagged} and seen[0]["value"] == tagged
        json.dumps(seen)  # what the 1.1.2 server got was JSON all through
    finally:
        await client.disconnect()
        await asyncio.wait_for(asyncio.to_thread(legacy.stop), WAIT_S)


def test_the_offline_queues_file_keeps_binary_messages(tmp_path: Any) -> None:
    """A queued publish or notification with bytes is stored as its binary
    body (the client's outbox) and read back with its bytes in place."""
    from ipc_client.queue_store import QueueStore
    from ipc_protocol import MessageType, decode_message, encode_message

    msg = Message.build(MessageType.PUBLISH, "app", "audit", {"blob": bytearray(b"\x00\xffraw"), "n": [memoryview(b"v")]})
    store = QueueStore(tmp_path / "outbox.db")
    try:
        store.add(0, 2e9, encode_message(msg))
        (row,), _ = store.load()
    finally:
        store.close()
    assert decode_message(row.body).payload == {"blob": b"\x00\xffraw", "n": [b"v"]}
