"""Binary payloads across languages through the real server (docs/protocol.md
§16): real Node client processes (``node/agent.js`` with ``node/binary_ops.js``)
and Python clients. Buffers, Uint8Arrays, ArrayBuffers and views (a
DataView and any typed array: their window's bytes) sent by Node arrive in
Python as ``bytes`` and back in Node as Buffers; Python's ``bytes``,
``bytearray`` and ``memoryview`` arrive in Node as Buffers; through
responders both ways, the server's in-process handlers, Node to
Node, pub/sub with Python and Node subscribers, and streams of binary
chunks both ways; zero-length, nested, and at the frame limit (one byte
over is refused by the Node client before anything is sent).

Bytes cross the agent's JSON lines described (binary_ops.js): ``spec()``
makes bytes in a Node command, ``desc()`` is how Node reports bytes it
received (its class, size and SHA-256)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from ipc_protocol import Message

from conftest import WAIT_S


def pattern(size: int, seed: int = 0) -> bytes:
    """binary_ops.js's pattern: byte i is (i + seed) mod 256."""
    start = seed % 256
    return (bytes(range(256)) * (size // 256 + 2))[start : start + size]


def spec(size: int, seed: int = 0, kind: str = "buffer") -> dict[str, Any]:
    """Bytes in a Node command, sent as ``kind`` (buffer, uint8array, arraybuffer, view,
    dataview, or a typed array's name: a window at offset 8 of a larger buffer)."""
    return {"$bytes": {"size": size, "seed": seed, "as": kind}}


def desc(data: bytes, kind: str = "Buffer") -> dict[str, Any]:
    """How Node reports received bytes: their class, size and digest."""
    return {"$bytes": {"type": kind, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "hex": data[:32].hex()}}


# Every kind of bytes Node sends, nested anywhere, and what arrives.
NODE_SENDS = {
    "buffer": spec(100, 1),
    "nested": {"list": [spec(3, 2, "uint8array"), {"raw": spec(5, 3, "arraybuffer")}], "n": 7},
    "view": spec(9, 4, "view"),
    "empty": spec(0),
    "text": "kept",
}
PYTHON_GETS = {
    "buffer": pattern(100, 1),
    "nested": {"list": [pattern(3, 2), {"raw": pattern(5, 3)}], "n": 7},
    "view": pattern(9, 4),
    "empty": b"",
    "text": "kept",
}
NODE_GETS = {
    "buffer": desc(pattern(100, 1)),
    "nested": {"list": [desc(pattern(3, 2)), {"raw": desc(pattern(5, 3))}], "n": 7},
    "view": desc(pattern(9, 4)),
    "empty": desc(b""),
    "text": "kept",
}


def only_bytes(value: Any) -> bool:
    """Every binary value in ``value`` is ``bytes`` (not a view of a frame)."""
    if isinstance(value, dict):
        return all(only_bytes(v) for v in value.values())
    if isinstance(value, list):
        return all(only_bytes(v) for v in value)
    return not isinstance(value, (bytearray, memoryview))


async def test_node_requests_a_python_responder_and_back(server, node_agent, py_client):
    responder = await py_client(server.port)
    seen: list[Any] = []

    async def echo(msg: Message) -> Any:
        seen.append(msg.payload)
        return {"got": msg.payload, "thumb": pattern(1 << 20, 9)}

    await responder.serve("py.bin", echo)
    agent = await node_agent(server.port)
    got = await agent.call("binRequest", channel="py.bin", payload=NODE_SENDS)
    assert seen == [PYTHON_GETS] and only_bytes(seen[0])
    assert got == {"got": NODE_GETS, "thumb": desc(pattern(1 << 20, 9))}
    # The payload itself may be the bytes, and the answer too.
    assert await agent.call("binRequest", channel="py.bin", payload=spec(0)) == {"got": desc(b""), "thumb": desc(pattern(1 << 20, 9))}
    assert seen[1] == b""


async def test_python_requests_a_node_responder_and_back(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("binServe", channel="node.bin")
    caller = await py_client(server.port)
    sent = {"b": pattern(70_000, 5), "ba": bytearray(pattern(10, 6)), "mv": memoryview(pattern(12, 7)), "deep": [[{"x": b""}]], "n": None}
    answer = await caller.request("node.bin", sent, timeout=WAIT_S)
    assert answer == {"b": pattern(70_000, 5), "ba": pattern(10, 6), "mv": pattern(12, 7), "deep": [[{"x": b""}]], "n": None}
    assert only_bytes(answer)
    served = await agent.wait_event("binServed")
    assert served["payload"] == {"b": desc(pattern(70_000, 5)), "ba": desc(pattern(10, 6)), "mv": desc(pattern(12, 7)), "deep": [[{"x": desc(b"")}]], "n": None}
    assert await caller.request("node.bin", pattern(3), timeout=WAIT_S) == pattern(3)


async def test_a_dataview_and_typed_arrays_from_node_arrive_as_the_bytes_of_their_window(server, node_agent, py_client):
    # Each a window at byte offset 8 of a larger ArrayBuffer (the rest 0xee):
    # Python gets exactly the window's bytes, as Node's Buffer.from(v.buffer,
    # v.byteOffset, v.byteLength) takes them, never the buffer around it.
    responder = await py_client(server.port)
    seen: list[Any] = []

    async def echo(msg: Message) -> Any:
        seen.append(msg.payload)
        return {"got": msg.payload}

    await responder.serve("py.views", echo)
    agent = await node_agent(server.port)
    sent = {"dv": spec(9, 4, "dataview"), "pcm": spec(10, 5, "Int16Array"), "nested": [{"f": spec(16, 6, "Float64Array")}], "n": 1}
    got = await agent.call("binRequest", channel="py.views", payload=sent)
    assert seen == [{"dv": pattern(9, 4), "pcm": pattern(10, 5), "nested": [{"f": pattern(16, 6)}], "n": 1}]
    assert got == {"got": {"dv": desc(pattern(9, 4)), "pcm": desc(pattern(10, 5)), "nested": [{"f": desc(pattern(16, 6))}], "n": 1}}
    # A Node responder answering a DataView and an Int16Array: Python gets their windows' bytes.
    await agent.call("binServe", channel="node.views", reply={"dv": spec(3, 7, "dataview"), "pcm": spec(6, 8, "Int16Array")})
    caller = await py_client(server.port)
    assert await caller.request("node.views", None, timeout=WAIT_S) == {"dv": pattern(3, 7), "pcm": pattern(6, 8)}


async def test_node_and_the_server_s_in_process_handler(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    assert await agent.call("binRequest", channel="py.echo", payload=NODE_SENDS) == NODE_GETS


async def test_node_to_node(server, node_agent):
    producer, consumer = await node_agent(server.port), await node_agent(server.port)
    await producer.call("binServe", channel="n2n.bin", reply={"ok": spec(4, 8, "arraybuffer")})
    assert await consumer.call("binRequest", channel="n2n.bin", payload=NODE_SENDS) == {"ok": desc(pattern(4, 8))}
    served = await producer.wait_event("binServed")
    assert served["payload"] == NODE_GETS


async def test_a_node_notification_reaches_a_python_responder(server, node_agent, py_client):
    responder = await py_client(server.port)
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def sink(msg: Message) -> None:
        got.put_nowait(msg.payload)

    await responder.serve("py.sink", sink)
    agent = await node_agent(server.port)
    await agent.call("binNotify", channel="py.sink", payload={"audio": spec(4096, 3, "uint8array")})
    assert await asyncio.wait_for(got.get(), WAIT_S) == {"audio": pattern(4096, 3)}


async def test_pubsub_with_python_and_node_subscribers(server, node_agent, py_client):
    py_sub = await py_client(server.port)
    arrived: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    await py_sub.subscribe("cams.*", lambda msg: arrived.put_nowait((msg.channel_id, msg.payload)))
    node_sub = await node_agent(server.port)
    await node_sub.call("binSubscribe", channel="cams.>")
    publisher = await node_agent(server.port)
    ack = await publisher.call("binPublish", channel="cams.front", payload={"jpeg": spec(50_000, 1), "at": 1}, ack=True)
    assert ack == {"delivered": 2}
    assert await asyncio.wait_for(arrived.get(), WAIT_S) == ("cams.front", {"jpeg": pattern(50_000, 1), "at": 1})
    message = await node_sub.wait_event("binMessage")
    assert message["payload"] == {"jpeg": desc(pattern(50_000, 1)), "at": 1}
    # Python publishes: both get bytes.
    py_pub = await py_client(server.port)
    await py_pub.publish("cams.back", [b"", bytearray(b"\x00\x01"), memoryview(pattern(300))])
    assert await asyncio.wait_for(arrived.get(), WAIT_S) == ("cams.back", [b"", b"\x00\x01", pattern(300)])
    message = await node_sub.wait_event("binMessage")
    assert message["payload"] == [desc(b""), desc(b"\x00\x01"), desc(pattern(300))]


async def test_streams_of_binary_chunks_both_ways(server, node_agent, py_client):
    chunk = 256 * 1024
    agent = await node_agent(server.port)
    await agent.call("binServeStream", channel="node.file")
    consumer = await py_client(server.port)
    digest = hashlib.sha256()
    count = 0
    async for item in consumer.stream("node.file", {"chunks": 12, "size": chunk}, window=4):
        assert isinstance(item["data"], bytes) and item["data"] == pattern(chunk, item["i"])
        digest.update(item["data"])
        count += 1
    assert count == 12

    producer = await py_client(server.port)

    async def chunks(msg: Message) -> AsyncIterator[bytes]:
        for i in range(msg.payload["chunks"]):
            yield pattern(msg.payload["size"], i)
        yield b""

    await producer.serve("py.file", chunks)
    got = await agent.call("binStream", channel="py.file", payload={"chunks": 10, "size": chunk}, window=4)
    expected = hashlib.sha256(b"".join(pattern(chunk, i) for i in range(10))).hexdigest()
    assert got == {"types": ["Buffer"], "sizes": [chunk] * 10 + [0], "sha256": expected, "error": None}


async def test_at_the_frame_limit_and_one_byte_over(start_server, node_agent, py_client):
    limit = 256 * 1024
    srv = await start_server("--max-frame-size", str(limit))
    responder = await py_client(srv.port)
    sizes: list[int] = []

    async def size(msg: Message) -> Any:
        sizes.append(len(msg.payload["data"]))
        return {"size": len(msg.payload["data"]), "sha256": hashlib.sha256(msg.payload["data"]).digest()}

    await responder.serve("py.size", size)
    agent = await node_agent(srv.port)
    at = await agent.call("binAtLimit", channel="py.size")
    assert (at["sent"], at["body"], at["limit"]) == (True, limit, limit)
    n = at["answer"]["size"]
    assert n > limit - 400 and at["answer"]["sha256"] == desc(hashlib.sha256(pattern(n)).digest())
    calls = len(sizes)
    over = await agent.call("binAtLimit", channel="py.size", over=True)
    assert (over["sent"], over["attempted"], over["error"]["code"], over["error"]["name"]) == (False, limit + 1, "too_large", "FrameTooLargeError")
    # The frame one byte over never went out; every frame that did (the probe,
    # and a try that missed the exact size below the limit) was answered once.
    assert all(body <= limit for body in over["bodies"])
    assert len(sizes) - calls == len(over["bodies"]) and sizes[calls] == 1000
    assert await agent.call("healthCheck") is True
