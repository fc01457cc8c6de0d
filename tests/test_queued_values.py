"""A call sent later than it is made sends its payload as it was at the
call (docs/protocol.md §16.3): a dict or list the caller changes once a
queued call has returned, or while a keyed request waits for its resend or
a request waits for a full send buffer, is sent as it was, not as it is
by then. Node's twin: js-client/test/queued_values.test.js."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ipc_client import IPCClient
from ipc_protocol import encode_frame
from ipc_protocol.payload_paths import snapshot
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .test_idempotency import Gated, counts, until
from .queued_support import offline, sink_on  # noqa: F401  (the fixture)
from .test_write_line import BODY, fill


async def test_a_queued_notify_sends_its_values_as_they_were(offline: Any) -> None:  # noqa: F811
    server, proxy, client = offline
    got = sink_on(server)
    payload: dict[str, Any] = {"n": {"a": 1}, "l": [1, 2]}
    await client.notify("sink", payload, timeout=WAIT_S)
    payload["n"]["a"] = 2  # the call has returned: the caller changes its containers
    payload["l"].append(3)
    payload["new"] = True
    proxy.refuse(False)
    await until(lambda: bool(got))
    # Before: {'n': {'a': 2}, 'l': [1, 2, 3], 'new': True}, the dict as it was at the replay.
    assert got == [{"n": {"a": 1}, "l": [1, 2]}]


async def test_a_queued_publish_sends_its_values_as_they_were(offline: Any) -> None:  # noqa: F811
    server, proxy, client = offline
    items = [{"i": 0}]
    await client.publish("news", items, timeout=WAIT_S)
    items[0]["i"] = 9
    items.append({"i": 1})
    async with IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S) as reader:
        got: list[Any] = []
        await reader.subscribe("news", lambda msg: got.append(msg.payload))
        proxy.refuse(False)
        await until(lambda: bool(got))
    assert got == [[{"i": 0}]]


async def test_a_queued_request_sends_its_values_as_they_were(offline: Any) -> None:  # noqa: F811
    server, proxy, client = offline
    handler = Gated()
    server.add_handler("jobs.run", handler)
    handler.gate.set()
    payload: dict[str, Any] = {"n": {"a": 1}}
    call = asyncio.ensure_future(client.request("jobs.run", payload, timeout=WAIT_S))
    await until(lambda: client.queue_stats()["size"] == 1)
    payload["n"]["a"] = 2
    proxy.refuse(False)
    assert await asyncio.wait_for(call, WAIT_S) == {"echo": {"n": {"a": 1}}}


async def test_a_keyed_request_resent_after_a_loss_sends_its_values_as_they_were() -> None:
    # The server refuses a key reused for another payload: a resend that
    # read the changed dict was refused (IdempotencyConflict) at once.
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2, no_responders_grace_s=0) as server:
        handler = Gated()
        server.add_handler("jobs.run", handler)
        async with FaultProxy("127.0.0.1", server.port) as proxy:
            client = IPCClient("app", "127.0.0.1", proxy.port, request_timeout=WAIT_S, initial_delay=0.01, max_delay=0.05)
            try:
                await asyncio.wait_for(client.connect(), WAIT_S)
                reconnected = asyncio.Event()
                client.on("reconnected", lambda info: reconnected.set())
                payload: dict[str, Any] = {"job": {"step": 1}, "tags": ["a"]}
                call = asyncio.ensure_future(client.request("jobs.run", payload, idempotency_key="job-1", timeout=WAIT_S))
                await asyncio.wait_for(handler.entered.wait(), WAIT_S)
                payload["job"]["step"] = 2
                payload["tags"].append("b")
                proxy.cut()
                await asyncio.wait_for(reconnected.wait(), WAIT_S)
                await until(lambda: counts(server)["joined"] == 1 or call.done())
                assert not call.done(), call.exception()
                assert counts(server)["joined"] == 1  # the resend joined the run: the same request
                handler.gate.set()
                assert await asyncio.wait_for(call, WAIT_S) == {"echo": {"job": {"step": 1}, "tags": ["a"]}}
                assert handler.runs == [{"job": {"step": 1}, "tags": ["a"]}]
            finally:
                await client.disconnect()


async def _stalled_peer(resume: asyncio.Event, frames: list[dict[str, Any]]) -> tuple[asyncio.Server, int]:
    """A bare peer that answers the connect, stops reading until ``resume``,
    then records every frame and answers requests and acked publishes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def read() -> dict[str, Any]:
            header = await reader.readexactly(4)
            return json.loads(await reader.readexactly(int.from_bytes(header, "big")))  # type: ignore[no-any-return]

        def answer(to: dict[str, Any], payload: Any) -> None:
            writer.write(encode_frame(json.dumps({"message_id": f"r-{to['message_id']}", "app_id": "app", "channel_id": to["channel_id"],
                                                  "message_type": "response", "payload": payload, "timestamp": 0, "reply_to": to["message_id"]}).encode()))

        hello = await read()
        answer(hello, {"status": "connected", "connection_id": "c", "protocol": 2, "heartbeat_interval_ms": 0, "max_frame_size": 1 << 24})
        await resume.wait()  # not reading: the client's socket fills up
        try:
            while True:
                msg = await read()
                frames.append(msg)
                if msg["message_type"] == "request":
                    answer(msg, "ok")
                elif msg.get("ack"):
                    answer(msg, {"delivered": 1})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    stub = await asyncio.start_server(handle, "127.0.0.1", 0)
    return stub, stub.sockets[0].getsockname()[1]


async def test_calls_that_wait_for_a_full_send_buffer_send_their_values_as_they_were() -> None:
    resume = asyncio.Event()
    frames: list[dict[str, Any]] = []
    stub, port = await _stalled_peer(resume, frames)
    c = IPCClient("app", "127.0.0.1", port, reconnect=False)
    try:
        await c.connect()
        await fill(lambda i: c.publish("bp", {"i": i, "body": BODY}, timeout=0.2), 1)
        plain: dict[str, Any] = {"n": {"a": 1}}  # the hot path: encoded from its fields
        keyed: dict[str, Any] = {"n": {"a": 1}}  # a Message, each attempt from the outbox
        acked: dict[str, Any] = {"n": {"a": 1}}  # a Message too (Calls.call)
        calls = [
            asyncio.ensure_future(c.request("bp.plain", plain, timeout=WAIT_S)),
            asyncio.ensure_future(c.request("bp.keyed", keyed, idempotency_key="k", timeout=WAIT_S)),
            asyncio.ensure_future(c.publish("bp.acked", acked, ack=True, timeout=WAIT_S)),
        ]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not any(call.done() for call in calls)
        assert len(c._link.conn.line) == 3  # type: ignore[union-attr]  # all three wait for their turn
        for payload in (plain, keyed, acked):
            payload["n"]["a"] = 2  # the calls were made: encoded (measured) already
        resume.set()
        assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == ["ok", "ok", 1]
    finally:
        await c.disconnect()
        stub.close()
        await stub.wait_closed()
    # Before: each was encoded again at its turn, {'n': {'a': 2}} sent.
    assert {f["channel_id"]: f["payload"] for f in frames if f["channel_id"] != "bp"} == {ch: {"n": {"a": 1}} for ch in ("bp.plain", "bp.keyed", "bp.acked")}


def test_a_snapshot_is_the_payload_as_the_encoder_writes_it() -> None:
    """What a queued or keyed call keeps: JSON values as the encoder writes
    them (its own containers, a tuple as a list), each mutable buffer as its
    bytes, the caller's payload untouched."""
    buf = bytearray(b"ab")
    view = memoryview(b"ro")
    payload: dict[str, Any] = {"a": buf, "l": [1, memoryview(buf)], "r": view, "t": (buf, 2), "d": {"x": [1.5, None]}}
    out = snapshot(payload)
    buf[:] = b"xy"
    payload["d"]["x"].append(3)
    assert out == {"a": b"ab", "l": [1, b"ab"], "r": view, "t": [b"ab", 2], "d": {"x": [1.5, None]}}
    assert out["r"] is view  # read-only: sent as it is, uncopied
    assert payload["a"] is buf and payload["l"][1].obj is buf  # the caller's payload is not changed
    plain = {"x": [1, "s"]}
    copy = snapshot(plain)
    assert copy == plain and copy is not plain and copy["x"] is not plain["x"]
    assert snapshot(bytearray(b"z")) == b"z" and type(snapshot(bytearray(b"z"))) is bytes
    assert snapshot("s") == "s" and snapshot(None) is None
