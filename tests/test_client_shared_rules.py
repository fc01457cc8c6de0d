"""Rules the Python client shares with the Node client (the redesign's shared
decisions): ``timeout_ms`` is the remaining time rounded up, at least 1 ms;
the frame limit before the handshake, and for good with a version-1 server,
is ``max_frame_size`` or the protocol's 16 MiB default; one connection
attempt is ``_establish``; a ``timeout`` counts as failed in the metrics,
whether the local timer or the server's answer ended the call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import FrameTooLarge, IPCClient, RequestTimeout
from ipc_client.calls import Calls, budget_ms
from ipc_client.connection import ClientConnection
from ipc_client.lifecycle import Lifecycle
from ipc_client.metrics import ClientMetrics
from ipc_protocol import FrameDecoder, HandlerError, Message, MessageType, encode_frame
from ipc_protocol.client_protocol import ClientProtocol
from ipc_protocol.constants import DEFAULT_MAX_FRAME_SIZE

from .conftest import WAIT_S
from .recording_transport import RecordingTransport


# Channels the stub answers with an error at once: channel -> code.
ANSWERED_ERRORS = {"expire": "timeout", "boom": "handler_error"}


class StubServer:
    """A server speaking frames by hand: it answers the connect (version 2,
    or version 1 without ``protocol``; ``connected``: more fields for its
    reply), records every frame, answers requests on ``echo``, with an
    error on ``ANSWERED_ERRORS``, and a publish's ack with ``acked``."""

    def __init__(
        self, *, legacy: bool = False, advertise: float | None = None, connected: dict[str, Any] | None = None, acked: Any = None
    ) -> None:
        self.legacy = legacy
        self.advertise = advertise
        self.connected = connected or {}
        self.acked = acked
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> StubServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self.writers:
            w.close()

    def send(self, writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(encode_frame(json.dumps(obj).encode()))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        decoder = FrameDecoder(None)
        while data := await reader.read(65536):
            for body in decoder.feed(data):
                msg = json.loads(body)
                self.frames.append(msg)
                self.arrived.set()
                if msg["channel_id"] == "system" and msg["payload"].get("action") == "connect":
                    payload: dict[str, Any] = {"status": "connected", "connection_id": "stub"}
                    if not self.legacy:
                        payload.update(protocol=2, heartbeat_interval_ms=0)
                        if self.advertise is not None:
                            payload["max_frame_size"] = self.advertise
                        payload.update(self.connected)
                    self.send(writer, self._reply(msg, payload, reply_to=not self.legacy))
                elif msg["message_type"] == "publish" and msg.get("ack"):
                    self.send(writer, self._reply(msg, self.acked))
                elif msg["channel_id"] == "echo" and msg["message_type"] == "request":
                    self.send(writer, self._reply(msg, msg["payload"]))
                elif msg["channel_id"] in ANSWERED_ERRORS and msg["message_type"] == "request":
                    reply = self._reply(msg, None)
                    reply["error"] = {"code": ANSWERED_ERRORS[msg["channel_id"]], "message": "answered by the stub"}
                    self.send(writer, reply)

    @staticmethod
    def _reply(msg: dict[str, Any], payload: Any, *, reply_to: bool = True) -> dict[str, Any]:
        reply = {"message_id": "r-" + msg["message_id"], "app_id": msg["app_id"], "channel_id": msg["channel_id"],
                 "message_type": "response", "payload": payload, "timestamp": 0}  # fmt: skip
        if reply_to:
            reply["reply_to"] = msg["message_id"]
        return reply

    def requests(self, channel: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["channel_id"] == channel and f["message_type"] == "request"]


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = await StubServer().start()
    yield server
    await server.stop()


# -- timeout_ms: the remaining time, rounded up, at least 1 ------------------------


def test_budget_is_the_remaining_time_rounded_up_and_at_least_one_millisecond() -> None:
    assert budget_ms(2.0) == 2000
    assert budget_ms(2.0004) == 2001  # rounding to nearest would say 2000
    assert budget_ms(0.0004) == 1  # rounding would say 0: "already late"
    assert budget_ms(1e-9) == 1


async def test_timeout_ms_on_the_wire_rounds_up_on_the_hot_path(stub: StubServer) -> None:
    async with IPCClient("app", "127.0.0.1", stub.port, reconnect=False) as client:
        assert (await client.request("echo", 1, timeout=2.0004)) == 1
        with pytest.raises(RequestTimeout):
            await client.request("silent", None, timeout=0.0004)
    assert [r["timeout_ms"] for r in stub.requests("echo")] == [2001]
    async with asyncio.timeout(WAIT_S):
        while not stub.requests("silent"):
            stub.arrived.clear()
            await stub.arrived.wait()
    assert stub.requests("silent")[0]["timeout_ms"] == 1


# -- the metrics: a timeout counts as failed, whoever ended the call ----------------


async def test_a_timeout_answer_counts_as_failed_like_a_local_timeout(stub: StubServer) -> None:
    """The server answers ``timeout`` at the deadline the client's timer has
    too (docs/protocol.md §6.5): whichever ends the call first, it is failed,
    never delivered; other error answers are the service's answer,
    delivered (as js-client/test/client_edges.test.js)."""
    async with IPCClient("app", "127.0.0.1", stub.port, reconnect=False) as client:
        for i in range(3):  # the server's timeout, long before the local one
            with pytest.raises(RequestTimeout):
                await client.request("expire", i, timeout=WAIT_S)
        with pytest.raises(HandlerError):
            await client.request("boom", None, timeout=WAIT_S)
        with pytest.raises(RequestTimeout):  # the local one: the stub never answers
            await client.request("silent", None, timeout=0.05)
        m = client.metrics()
    assert (m["messages_sent"], m["messages_delivered"], m["messages_failed"]) == (5, 1, 4)


# -- a timeout's message names the call's own timeout ---------------------------


def test_a_timeout_is_named_to_the_millisecond_without_an_exponent() -> None:
    from ipc_client.timeouts import seconds_text

    assert [seconds_text(s) for s in (0.3, 0.1 + 0.2, 1, 1.0, 2.5, 60, 3600, 86400.5, 0.0001)] == [
        "0.3", "0.3", "1", "1", "2.5", "60", "3600", "86400.5", "0.0001"
    ]  # fmt: skip


async def test_a_timeout_names_the_calls_own_timeout_not_what_was_left(stub: StubServer) -> None:
    """As Node's (js-client/test/wording.test.js): "within 0.3 s" for
    timeout=0.3 on the hot path, for a call queued while reconnecting and
    written 0.1 s later (what was left then: 0.2), and for a coalesced caller."""
    async with IPCClient("app", "127.0.0.1", stub.port, initial_delay=0.1, max_delay=0.1, jitter=0) as client:
        with pytest.raises(RequestTimeout, match=r"^no response on 'silent' within 0\.3 s$"):
            await client.request("silent", None, timeout=0.3)
        reconnecting = asyncio.Event()
        client.on("reconnecting", lambda *_: reconnecting.set())
        for writer in stub.writers:
            writer.close()
        async with asyncio.timeout(WAIT_S):
            await reconnecting.wait()
        with pytest.raises(RequestTimeout, match=r"^no response on 'silent' within 0\.3 s$"):
            await client.request("silent", 1, timeout=0.3)
        assert stub.requests("silent")[-1]["timeout_ms"] <= 250  # written once the reconnect delay had passed
        first = asyncio.ensure_future(client.request("silent", 2, timeout=WAIT_S, coalesce=True))
        async with asyncio.timeout(WAIT_S):
            while not [r for r in stub.requests("silent") if r["payload"] == 2]:  # the shared call is in flight
                stub.arrived.clear()
                await stub.arrived.wait()
        with pytest.raises(RequestTimeout, match=r"^no response on 'silent' within 0\.3 s \(a coalesced call\)$"):
            await client.request("silent", 2, timeout=0.3, coalesce=True)
        first.cancel()


class FrozenClock:
    """The loop as Calls sees it, with its clock stopped: what is left of a
    deadline is then exact."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._loop = asyncio.get_running_loop()

    def time(self) -> float:
        return self.now

    def create_future(self) -> asyncio.Future[Any]:
        return self._loop.create_future()


async def test_timeout_ms_on_the_wire_rounds_up_for_calls_built_as_messages() -> None:
    """The message path (the offline queue's replay, calls through a circuit
    breaker) sends what is left of the deadline, rounded up."""
    calls = Calls("app", ClientMetrics())
    calls.loop = FrozenClock(100.0)  # type: ignore[assignment]
    conn = ClientConnection(ClientProtocol("app", "c", client="test"), lambda c, m: None, lambda c, e: None)
    transport = RecordingTransport()
    conn.connection_made(transport)
    futs: list[asyncio.Future[Message]] = []
    for left in (0.5004, 0.0000001):
        msg = Message.build(MessageType.REQUEST, "app", "svc", None)
        futs.append(asyncio.get_running_loop().create_future())
        calls.start(conn, msg, 100.0 + left, futs[-1])
        await asyncio.sleep(0)  # the frame goes out; the long-past deadline fails the call
    sent = [json.loads(body) for body in FrameDecoder(None).feed(b"".join(transport.writes))]
    assert [m["timeout_ms"] for m in sent] == [501, 1]  # rounding to nearest would say 500 and 0
    conn.abort()
    await asyncio.wait(futs, timeout=WAIT_S)
    assert [type(f.exception()) for f in futs] == [RequestTimeout, RequestTimeout]  # the frozen clock is past both deadlines


# -- the frame limit before the handshake and with a version-1 server -------------


async def test_a_version_1_server_gets_frames_up_to_the_default_limit_only() -> None:
    stub = await StubServer(legacy=True).start()
    try:
        async with IPCClient("app", "127.0.0.1", stub.port, reconnect=False) as client:
            assert client.legacy
            with pytest.raises(FrameTooLarge):
                await client.publish("big", "x" * DEFAULT_MAX_FRAME_SIZE)
            await client.publish("small", "x")  # the connection is still fine
    finally:
        await stub.stop()


async def test_a_version_1_server_gets_frames_up_to_max_frame_size_when_set() -> None:
    stub = await StubServer(legacy=True).start()
    try:
        async with IPCClient("app", "127.0.0.1", stub.port, reconnect=False, max_frame_size=1024) as client:
            with pytest.raises(FrameTooLarge):
                await client.publish("big", "x" * 2048)
    finally:
        await stub.stop()


async def test_a_frame_over_the_default_limit_before_the_handshake_ends_the_attempt() -> None:
    """A peer announcing a frame larger than 16 MiB before its handshake reply
    is refused at the header, not waited for."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the connect
        writer.write((DEFAULT_MAX_FRAME_SIZE + 1).to_bytes(4, "big"))
        await reader.read()  # until the client hangs up

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = IPCClient("app", "127.0.0.1", port, reconnect=False, connect_timeout=WAIT_S)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Exception) as info:
            await client.connect()
        assert not isinstance(info.value, RequestTimeout)
        assert loop.time() - started < WAIT_S / 2  # refused at once, not after the connect timeout
    finally:
        await client.disconnect()
        server.close()


@pytest.mark.parametrize("advertise", [4096, 4096.0])
async def test_a_version_2_server_s_advertised_limit_lowers_the_default(advertise: float) -> None:
    """4096.0 too: JSON.parse cannot tell it from 4096, and the Node client applies either."""
    stub = await StubServer(advertise=advertise).start()
    try:
        async with IPCClient("app", "127.0.0.1", stub.port, reconnect=False) as client:
            with pytest.raises(FrameTooLarge):
                await client.publish("big", "x" * 8192)
    finally:
        await stub.stop()


# -- numbers in the server's replies, read as the Node client reads them ------------------


async def test_an_advertised_heartbeat_of_true_is_no_1_ms_heartbeat() -> None:
    """Python's ``True`` is an int: it made a 1 ms heartbeat, a ping every
    millisecond and the connection declared dead after 2 ms without a frame.
    The Node client ignores a non-number there, as a missing one (the
    default 15 s), and so does this one now."""
    stub = await StubServer(connected={"heartbeat_interval_ms": True}).start()
    try:
        async with IPCClient("app", "127.0.0.1", stub.port, reconnect=False) as client:
            assert client.get_connection_health()["heartbeat_interval_ms"] == 15000
            assert await client.request("echo", 1, timeout=WAIT_S) == 1
            assert client.connected
        assert [f for f in stub.requests("system") if f["payload"].get("action") == "ping"] == []
    finally:
        await stub.stop()


@pytest.mark.parametrize(
    ("acked", "delivered"),
    [({"status": "published", "delivered": 2}, 2), ({"status": "published", "delivered": 2.0}, 2),
     ({"status": "published", "delivered": True}, None), ({"status": "published", "delivered": "3"}, None),
     ({"status": "published"}, None)],
    ids=["2", "2.0", "true", "string", "missing"],
)  # fmt: skip
async def test_a_publish_ack_s_delivered_is_a_number_or_none(acked: dict[str, Any], delivered: int | None) -> None:
    """As the Node client's ``{delivered}``: a number, else null; ``true`` is not 1."""
    stub = await StubServer(acked=acked).start()
    try:
        async with IPCClient("app", "127.0.0.1", stub.port, reconnect=False) as client:
            assert await client.publish("news", {"n": 1}, ack=True, timeout=WAIT_S) == delivered
    finally:
        await stub.stop()


# -- one attempt is _establish ------------------------------------------------------


async def test_every_connection_attempt_goes_through_establish(stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []
    original = Lifecycle._establish

    async def counting(self: Lifecycle, generation: int) -> None:
        attempts.append(generation)
        await original(self, generation)

    monkeypatch.setattr(Lifecycle, "_establish", counting)
    async with IPCClient("app", "127.0.0.1", stub.port, initial_delay=0.01, jitter=0) as client:
        assert len(attempts) == 1
        reconnected = asyncio.Event()
        client.on("reconnected", lambda info: reconnected.set())
        for w in stub.writers:
            w.close()
        async with asyncio.timeout(WAIT_S):
            await reconnected.wait()
    assert len(attempts) == 2
