"""A full send buffer (ipc_client/write_line.py, docs/resilience.md §4): a
publish, notify or request that finds the socket full waits BEFORE it is
written. Against the real server frozen with SIGSTOP (it stops reading), and
a bare peer that stops reading its socket: a call that times out, is
cancelled or loses its connection while it waits was never sent, and what is
called after it is never written before it."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, Message, RequestTimeout, encode_frame

from .conftest import WAIT_S

BODY = "x" * (256 * 1024)
MAX_CALLS = 400  # 100 MiB: far past what loopback's socket buffers hold


async def fill(call: Callable[[int], Awaitable[Any]], rejections: int) -> tuple[list[int], list[tuple[int, BaseException]]]:
    """Awaited calls (each with a short timeout) until ``rejections`` of them
    raise: the socket's buffer is then full and stays so."""
    ok: list[int] = []
    failed: list[tuple[int, BaseException]] = []
    for i in range(MAX_CALLS):
        try:
            await call(i)
            ok.append(i)
        except RequestTimeout as exc:
            failed.append((i, exc))
            if len(failed) == rejections:
                return ok, failed
    raise AssertionError("the buffer never filled up")


@pytest.fixture
async def frozen(spawn: Callable[..., Any]) -> AsyncIterator[Any]:
    """The real server in its own process; SIGCONT on the way out."""
    srv = await spawn("-m", "ipc_server", "--port", "0")
    yield srv
    srv.signal(signal.SIGCONT)


@pytest.mark.parametrize("kind", ["publish", "notify"])
async def test_a_one_way_call_that_times_out_on_a_full_buffer_was_never_sent(frozen: Any, kind: str) -> None:
    received: list[int] = []
    done = asyncio.Event()

    async def on_message(msg: Message) -> None:
        if msg.channel_id == "bp.end":
            done.set()
        else:
            received.append(msg.payload["i"])

    sub = IPCClient("app", "127.0.0.1", frozen.port)
    pub = IPCClient("app", "127.0.0.1", frozen.port, heartbeat_interval=30)
    await sub.connect()
    await pub.connect()
    if kind == "publish":
        await sub.subscribe("bp.>", on_message)
    else:
        await sub.serve("bp.>", on_message)
    send = pub.publish if kind == "publish" else pub.notify
    conn = pub._link.conn
    assert conn is not None
    frozen.signal(signal.SIGSTOP)  # it reads no more: the socket's buffers fill up
    try:
        ok, failed = await fill(lambda i: send("bp.x", {"i": i, "body": BODY}, timeout=0.2), 3)
        buffered = conn.transport.get_write_buffer_size()  # type: ignore[union-attr]
        cancelled = asyncio.ensure_future(send("bp.x", {"i": 1000, "body": BODY}, timeout=WAIT_S))
        behind = asyncio.ensure_future(send("bp.x", {"i": 1001}, timeout=WAIT_S))  # waits behind it
        await asyncio.sleep(0)  # both waiting
        assert not cancelled.done()
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        after = conn.transport.get_write_buffer_size()  # type: ignore[union-attr]
    finally:
        frozen.signal(signal.SIGCONT)
    await asyncio.wait_for(behind, WAIT_S)
    await send("bp.end", None, timeout=WAIT_S)
    await asyncio.wait_for(done.wait(), WAIT_S)
    assert received == [*ok, 1001]  # what returned, in order; nothing that raised or was cancelled
    assert after == buffered  # nothing added to the socket's buffer while it was full
    kind_name = "publish" if kind == "publish" else "notification"
    for _, exc in failed:
        assert str(exc).startswith(f"{kind_name} on 'bp.x' was not sent: the connection's send buffer stayed full")
    metrics = pub.metrics()
    assert metrics["messages_failed"] == 3  # the cancelled one counts in neither
    assert metrics["messages_sent"] == metrics["messages_delivered"] == len(ok) + 2
    await pub.disconnect()
    await sub.disconnect()


async def test_a_request_that_times_out_on_a_full_buffer_was_never_sent(frozen: Any) -> None:
    served: list[Any] = []

    async def echo(msg: Message) -> Any:
        served.append(msg.payload["i"])
        return msg.payload["i"]

    responder = IPCClient("app", "127.0.0.1", frozen.port)
    caller = IPCClient("app", "127.0.0.1", frozen.port, heartbeat_interval=30)
    await responder.connect()
    await caller.connect()
    await responder.serve("bp.req", echo)
    conn = caller._link.conn
    assert conn is not None
    frozen.signal(signal.SIGSTOP)
    try:
        await fill(lambda i: caller.publish("bp.x", {"i": i, "body": BODY}, timeout=0.2), 1)
        buffered = conn.transport.get_write_buffer_size()  # type: ignore[union-attr]
        sent = caller.metrics()["messages_sent"]
        results = await asyncio.gather(*(caller.request("bp.req", {"i": i, "body": BODY}, timeout=0.2) for i in range(20)), return_exceptions=True)
        assert all(isinstance(r, RequestTimeout) and "was not sent" in str(r) for r in results), results
        assert conn.transport.get_write_buffer_size() == buffered  # type: ignore[union-attr]  # 20 x 256 KiB never reached it
        assert caller.metrics()["messages_sent"] == sent
        assert len(caller._calls) == 0
    finally:
        frozen.signal(signal.SIGCONT)
    assert await caller.request("bp.req", {"i": "after"}, timeout=WAIT_S) == "after"
    assert served == ["after"]  # none of the 20 ran
    await caller.disconnect()
    await responder.disconnect()


async def _silent_peer(handshakes: asyncio.Queue[Any], resume: asyncio.Event, frames: list[dict[str, Any]]) -> tuple[asyncio.Server, int]:
    """A bare peer: answers the connect, stops reading until ``resume``,
    then records every frame in order and echoes requests."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def read() -> dict[str, Any]:
            header = await reader.readexactly(4)
            return json.loads(await reader.readexactly(int.from_bytes(header, "big")))  # type: ignore[no-any-return]

        def answer(to: dict[str, Any], payload: Any) -> None:
            writer.write(encode_frame(json.dumps({"message_id": f"r-{to['message_id']}", "app_id": "app", "channel_id": to["channel_id"],
                                                  "message_type": "response", "payload": payload, "timestamp": 0, "reply_to": to["message_id"]}).encode()))

        hello = await read()
        answer(hello, {"status": "connected", "connection_id": "c", "protocol": 2, "heartbeat_interval_ms": 0, "max_frame_size": 1 << 24})
        handshakes.put_nowait(writer)
        await resume.wait()  # not reading: the client's socket fills up
        try:
            while True:
                msg = await read()
                frames.append(msg)
                if msg["message_type"] == "request":
                    answer(msg, msg["payload"]["i"])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    stub = await asyncio.start_server(handle, "127.0.0.1", 0)
    return stub, stub.sockets[0].getsockname()[1]


async def test_what_is_called_after_a_waiting_call_is_written_after_it() -> None:
    handshakes: asyncio.Queue[Any] = asyncio.Queue()
    resume = asyncio.Event()
    frames: list[dict[str, Any]] = []
    stub, port = await _silent_peer(handshakes, resume, frames)
    c = IPCClient("app", "127.0.0.1", port, reconnect=False)
    await c.connect()
    await asyncio.wait_for(handshakes.get(), WAIT_S)
    ok, _ = await fill(lambda i: c.publish("bp", {"i": i, "body": BODY}, timeout=0.2), 1)
    calls = [
        asyncio.ensure_future(c.publish("bp", {"i": "a", "body": BODY}, timeout=WAIT_S)),
        asyncio.ensure_future(c.request("bp.req", {"i": "r"}, timeout=WAIT_S)),
        asyncio.ensure_future(c.publish("bp", {"i": "b"}, timeout=WAIT_S)),
        asyncio.ensure_future(c.notify("bp", {"i": "c"}, timeout=WAIT_S)),
    ]
    await asyncio.sleep(0)
    assert not any(call.done() for call in calls)
    resume.set()
    results = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)
    assert results == [None, "r", None, None]
    await c.disconnect()
    stub.close()
    await stub.wait_closed()
    assert [f["payload"]["i"] for f in frames if f["channel_id"].startswith("bp")] == [*ok, "a", "r", "b", "c"]


async def test_a_call_waiting_when_the_connection_drops_raises_connection_lost_unsent() -> None:
    handshakes: asyncio.Queue[Any] = asyncio.Queue()
    stub, port = await _silent_peer(handshakes, asyncio.Event(), [])
    c = IPCClient("app", "127.0.0.1", port, reconnect=False)
    await c.connect()
    writer = await asyncio.wait_for(handshakes.get(), WAIT_S)
    await fill(lambda i: c.publish("bp", {"i": i, "body": BODY}, timeout=0.2), 1)
    publish = asyncio.ensure_future(c.publish("bp", {"i": "p", "body": BODY}, timeout=WAIT_S))
    request = asyncio.ensure_future(c.request("bp.req", {"i": "r"}, timeout=WAIT_S))
    await asyncio.sleep(0)
    writer.transport.abort()
    for call in (publish, request):
        with pytest.raises(ConnectionLost, match="the call was not sent"):
            await asyncio.wait_for(call, WAIT_S)
    await c.disconnect()
    stub.close()
    await stub.wait_closed()
