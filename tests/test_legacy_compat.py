"""Wire compatibility with the legacy ``ipc-framework`` 1.1.2 package
(docs/protocol.md §3, §9, §10), checked against the real package.

Part A runs the real 1.1.2 ``FrameworkClient`` against our ``IPCServer``;
part B runs our ``IPCClient`` against the real 1.1.2 ``FrameworkServer`` and
against a raw-socket peer that checks every frame the client sends.

The legacy package is blocking and threaded: its calls run in worker threads
(``asyncio.to_thread``) so the event loop serving our side keeps running.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from ipc_framework import FrameworkClient, FrameworkServer
from ipc_framework.core import Message as LegacyMessage
from ipc_framework.core import MessageType as LegacyType

from ipc_client import IPCClient
from ipc_protocol import HandlerError, Message, MessageType, NoResponders
from ipc_server import IPCServer
from ipc_server.connection import ConnState, ServerConnection

APP = "compat"
WAIT_S = 5.0
HEARTBEAT_S = 0.2

# The seven fields of a version-1 frame; 1.1.2 drops the connection on any other.
LEGACY_KEYS = frozenset({"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"})


# -- helpers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def blocking(fn: Callable[..., Any], *args: Any, timeout: float = 2 * WAIT_S, **kwargs: Any) -> Any:
    """Run a blocking legacy call in a worker thread, bounded."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout)


def frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj).encode("utf-8")
    return len(body).to_bytes(4, "big") + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]]:
    size = int.from_bytes(await reader.readexactly(4), "big")
    raw = (await reader.readexactly(size)).decode("utf-8")
    return raw, json.loads(raw)


def is_ping(obj: dict[str, Any]) -> bool:
    payload = obj.get("payload")
    return (
        obj.get("message_type") == "request"
        and obj.get("channel_id") == "system"
        and isinstance(payload, dict)
        and payload.get("action") == "ping"
    )


class RecordingLegacyClient(FrameworkClient):
    """The real 1.1.2 client, unchanged except that it keeps a copy of every
    frame it receives (parsing and dispatch are still the package's own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[dict[str, Any]] = []
        self._frames_lock = threading.Lock()

    def _receive_message(self) -> str | None:
        data = super()._receive_message()
        if data is not None:
            with self._frames_lock:
                self.frames.append(json.loads(data))
        return data

    def received(self) -> list[dict[str, Any]]:
        with self._frames_lock:
            return list(self.frames)


class Inbox:
    """Collects messages delivered on a legacy client's receive thread."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def _wait(self, count: int, timeout: float) -> list[Any]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._items) >= count, timeout)
            return list(self._items)

    async def get(self, count: int = 1, timeout: float = WAIT_S) -> list[Any]:
        items = await blocking(self._wait, count, timeout, timeout=timeout + 1)
        assert len(items) >= count, f"expected {count} message(s) within {timeout} s, got {len(items)}"
        return items


class Clients:
    """Makes clients and stops every one of them at teardown."""

    def __init__(self) -> None:
        self.legacy_clients: list[RecordingLegacyClient] = []
        self.v2_clients: list[IPCClient] = []

    async def legacy(self, port: int, app_id: str = APP) -> RecordingLegacyClient:
        client = RecordingLegacyClient(app_id, host="127.0.0.1", port=port, connection_timeout=WAIT_S)
        self.legacy_clients.append(client)
        assert await blocking(client.connect) is True
        return client

    async def v2(self, port: int, app_id: str = APP) -> IPCClient:
        client = IPCClient(app_id, "127.0.0.1", port, reconnect=False, connect_timeout=WAIT_S, request_timeout=WAIT_S)
        self.v2_clients.append(client)
        await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    async def close(self) -> None:
        while self.v2_clients:
            await asyncio.wait_for(self.v2_clients.pop().disconnect(), WAIT_S)
        while self.legacy_clients:
            legacy = self.legacy_clients.pop()
            if legacy.socket is not None:
                # Wakes the receive thread at once (closing alone leaves its recv() blocked).
                with contextlib.suppress(OSError):
                    legacy.socket.shutdown(socket.SHUT_RDWR)
            await blocking(legacy.disconnect)
            if legacy.socket is not None:  # disconnect() is a no-op once the server hung up
                legacy.socket.close()


@pytest.fixture
async def server(request: pytest.FixtureRequest):
    """Our server on a free port; indirect parametrization passes config overrides."""
    overrides = getattr(request, "param", {})
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=1.0, no_responders_grace_s=0, **overrides) as srv:
        yield srv


@pytest.fixture
async def clients():
    made = Clients()
    yield made
    await made.close()


def legacy_echo(srv: FrameworkServer, msg: LegacyMessage) -> None:
    """A 1.1.x request handler, written the way ipc_framework/examples/basic_server.py does."""
    conn = srv.connection_manager.get_connection(msg.payload["connection_id"])
    srv.send_to_connection(conn, msg.create_response({"echo": msg.payload.get("value"), "server": "1.1.2"}))


@pytest.fixture
async def legacy_server():
    """The real 1.1.2 server, with app ``APP`` and a request handler on channel ``x``."""
    srv = FrameworkServer(host="127.0.0.1", port=free_port())
    await blocking(srv.start)
    app = srv.create_application(APP)
    channel = app.create_channel("x")
    channel.set_handler(LegacyType.REQUEST, lambda msg: legacy_echo(srv, msg))
    try:
        yield srv
    finally:
        await blocking(srv.stop)


def server_conn(server: IPCServer, connection_id: str) -> ServerConnection:
    found = [c for c in server.connections if c.connection_id == connection_id]
    assert len(found) == 1, f"no open server connection {connection_id!r}: {server.connections}"
    return found[0]


def assert_legacy_frames(frames: list[dict[str, Any]]) -> None:
    """Every frame a 1.1.2 peer got holds exactly the seven version-1 fields."""
    assert frames
    for obj in frames:
        assert set(obj) == LEGACY_KEYS, obj


def legacy_error(response: LegacyMessage | None, code: str) -> dict[str, Any]:
    """The §10 error shape: a response whose payload is ``{"error": {code, message}}``."""
    assert response is not None, "the legacy client got no response"
    assert response.message_type is LegacyType.RESPONSE
    assert isinstance(response.payload, dict) and set(response.payload) == {"error"}, response.payload
    error = response.payload["error"]
    assert {"code", "message"} <= set(error), error
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


async def assert_legacy_alive(server: IPCServer, legacy: RecordingLegacyClient) -> None:
    assert legacy.connected
    assert await blocking(legacy.ping) is True
    assert server_conn(server, legacy.connection_id).state is ConnState.OPEN
    assert_legacy_frames(legacy.received())


# -- A. a legacy 1.1.2 client against our server ----------------------------------


async def test_legacy_client_handshakes_as_version_1(server: IPCServer, clients: Clients) -> None:
    legacy = await clients.legacy(server.port)

    conn = server_conn(server, legacy.connection_id)
    assert conn.legacy is True
    assert conn.state is ConnState.OPEN
    assert conn.app_id == APP
    assert conn.heartbeat is None

    # The connect reply: a version-1 frame without the version-2 handshake fields.
    [ack] = legacy.received()
    assert set(ack) == LEGACY_KEYS
    assert ack["message_type"] == "response"
    assert ack["payload"] == {"status": "connected", "connection_id": legacy.connection_id}

    assert await blocking(legacy.ping) is True
    pong = legacy.received()[-1]
    assert pong["payload"] == {"status": "pong"}
    assert_legacy_frames(legacy.received())


async def test_pubsub_between_two_legacy_clients(server: IPCServer, clients: Clients) -> None:
    publisher = await clients.legacy(server.port)
    subscriber = await clients.legacy(server.port)
    inbox = Inbox()
    assert subscriber.subscribe("news", inbox.put) is True
    # Frames of one connection are handled in order: the pong proves the
    # subscription is registered.
    assert await blocking(subscriber.ping) is True
    # No subscribe ack for a version-1 client: only the connect reply and the pong.
    assert [f["payload"] for f in subscriber.received()] == [
        {"status": "connected", "connection_id": subscriber.connection_id},
        {"status": "pong"},
    ]

    own = Inbox()
    publisher.subscribe("news", own.put)
    assert await blocking(publisher.ping) is True

    message_id = await blocking(publisher.publish, "news", {"headline": "hello", "n": 1})

    [msg] = await inbox.get(1)
    assert isinstance(msg, LegacyMessage)
    assert msg.message_type is LegacyType.PUBLISH
    assert msg.channel_id == "news"
    assert msg.app_id == APP
    assert msg.message_id == message_id
    assert msg.payload == {"headline": "hello", "n": 1}
    assert msg.reply_to is None
    # A subscribed publisher gets its own publication, as with a 1.1.2 server.
    [echo] = await own.get(1)
    assert echo.message_id == message_id and echo.payload == msg.payload
    await assert_legacy_alive(server, subscriber)
    await assert_legacy_alive(server, publisher)


async def test_pubsub_v2_publisher_to_legacy_subscriber(server: IPCServer, clients: Clients) -> None:
    subscriber = await clients.legacy(server.port)
    publisher = await clients.v2(server.port)
    assert publisher.legacy is False
    inbox = Inbox()
    subscriber.subscribe("news", inbox.put)
    assert await blocking(subscriber.ping) is True

    # Version-2 extras (headers, ack) must be stripped for the 1.1.2 subscriber.
    delivered = await publisher.publish("news", {"headline": "from v2"}, headers={"trace-id": "t-1"}, ack=True)
    assert delivered == 1

    [msg] = await inbox.get(1)
    assert msg.message_type is LegacyType.PUBLISH
    assert msg.channel_id == "news"
    assert msg.payload == {"headline": "from v2"}
    publication = [f for f in subscriber.received() if f["message_type"] == "publish"]
    assert len(publication) == 1 and set(publication[0]) == LEGACY_KEYS
    await assert_legacy_alive(server, subscriber)


async def test_pubsub_legacy_publisher_to_v2_subscriber(server: IPCServer, clients: Clients) -> None:
    publisher = await clients.legacy(server.port)
    subscriber = await clients.v2(server.port)
    received: asyncio.Queue[Message] = asyncio.Queue()
    await asyncio.wait_for(subscriber.subscribe("news.*", received.put_nowait), WAIT_S)  # acknowledged

    message_id = await blocking(publisher.publish, "news.eu", {"headline": "from 1.1.2"})

    msg = await asyncio.wait_for(received.get(), WAIT_S)
    assert msg.message_type is MessageType.PUBLISH
    assert msg.channel_id == "news.eu"
    assert msg.message_id == message_id
    assert msg.payload == {"headline": "from 1.1.2"}
    await assert_legacy_alive(server, publisher)


async def test_legacy_request_to_in_process_handler(server: IPCServer, clients: Clients) -> None:
    @server.handler("math.add")
    async def add(msg: Message) -> int:
        return msg.payload["a"] + msg.payload["b"]

    @server.handler("math.neg")
    def neg(msg: Message) -> int:  # a sync handler runs in a worker thread
        return -msg.payload

    legacy = await clients.legacy(server.port)

    response = await blocking(legacy.send_request, "math.add", {"a": 2, "b": 3}, timeout=WAIT_S)
    assert response is not None
    assert response.message_type is LegacyType.RESPONSE
    assert response.payload == 5
    response = await blocking(legacy.send_request, "math.neg", 7, timeout=WAIT_S)
    assert response is not None and response.payload == -7
    await assert_legacy_alive(server, legacy)


async def test_legacy_request_to_v2_responder(server: IPCServer, clients: Clients) -> None:
    responder = await clients.v2(server.port)
    seen: list[Message] = []

    async def multiply(msg: Message) -> dict[str, int]:
        seen.append(msg)
        return {"product": msg.payload["a"] * msg.payload["b"]}

    await asyncio.wait_for(responder.serve("calc.mul", multiply), WAIT_S)
    legacy = await clients.legacy(server.port)

    response = await blocking(legacy.send_request, "calc.mul", {"a": 6, "b": 7}, timeout=WAIT_S)

    assert response is not None
    assert response.message_type is LegacyType.RESPONSE
    assert response.payload == {"product": 42}
    assert [m.payload for m in seen] == [{"a": 6, "b": 7}]
    assert seen[0].timeout_ms is None  # a 1.1.2 request carries no deadline
    await assert_legacy_alive(server, legacy)


async def test_errors_reach_legacy_client_in_the_payload(server: IPCServer, clients: Clients) -> None:
    @server.handler("boom.local")
    async def explode(msg: Message) -> None:
        raise ValueError("local handler failed")

    responder = await clients.v2(server.port)

    async def remote_explode(msg: Message) -> None:
        raise KeyError("remote handler failed")

    await asyncio.wait_for(responder.serve("boom.remote", remote_explode), WAIT_S)
    legacy = await clients.legacy(server.port)

    # Nobody answers the channel.
    response = await blocking(legacy.send_request, "nobody.home", {"q": 1}, timeout=WAIT_S)
    legacy_error(response, "no_responders")
    await assert_legacy_alive(server, legacy)

    # An in-process handler raises.
    response = await blocking(legacy.send_request, "boom.local", {}, timeout=WAIT_S)
    error = legacy_error(response, "handler_error")
    assert "local handler failed" in error["message"]
    await assert_legacy_alive(server, legacy)

    # A version-2 responder raises; its error is relayed in the payload too.
    response = await blocking(legacy.send_request, "boom.remote", {}, timeout=WAIT_S)
    error = legacy_error(response, "handler_error")
    assert "remote handler failed" in error["message"]
    await assert_legacy_alive(server, legacy)

    # A reserved channel is refused, not fatal.
    response = await blocking(legacy.send_request, "$sys.anything", {}, timeout=WAIT_S)
    legacy_error(response, "forbidden")
    await assert_legacy_alive(server, legacy)

    # The same errors reach a version-2 client in the ``error`` field instead.
    v2 = await clients.v2(server.port)
    with pytest.raises(NoResponders):
        await v2.send_request("nobody.home", {"q": 1}, timeout=WAIT_S)
    with pytest.raises(HandlerError):
        await v2.send_request("boom.local", {}, timeout=WAIT_S)


@pytest.mark.parametrize("server", [{"heartbeat_interval_s": HEARTBEAT_S}], indirect=True)
async def test_legacy_client_never_pinged_nor_closed_for_silence(server: IPCServer, clients: Clients) -> None:
    @server.handler("echo")
    async def echo(msg: Message) -> Any:
        return msg.payload

    loop = asyncio.get_running_loop()
    legacy = await clients.legacy(server.port)
    conn = server_conn(server, legacy.connection_id)
    assert conn.legacy and conn.heartbeat is None
    frames_after_connect = len(legacy.received())
    silent_since = loop.time()

    # A silent version-2 peer on the same server is the clock: the server pings
    # it after one interval; it answers that ping once, then stays silent and is
    # closed after twice the interval, so >= 3 intervals pass in all.
    reader, writer = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), WAIT_S)
    try:
        writer.write(frame({
            "message_id": "control-connect", "app_id": APP, "channel_id": "system", "message_type": "request",
            "payload": {"action": "connect", "connection_id": "control", "protocol": 2}, "timestamp": 0, "reply_to": None,
        }))
        _, hello = await asyncio.wait_for(read_frame(reader), WAIT_S)
        assert hello["payload"]["protocol"] == 2
        assert hello["payload"]["heartbeat_interval_ms"] == int(HEARTBEAT_S * 1000)

        _, ping = await asyncio.wait_for(read_frame(reader), WAIT_S)
        assert is_ping(ping)
        writer.write(frame({
            "message_id": "control-pong", "app_id": APP, "channel_id": "system", "message_type": "response",
            "payload": {"status": "pong"}, "timestamp": 0, "reply_to": ping["message_id"],
        }))
        _, ping = await asyncio.wait_for(read_frame(reader), WAIT_S)
        assert is_ping(ping)
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            while True:  # the server gives up on the silent version-2 peer
                await asyncio.wait_for(read_frame(reader), WAIT_S)
    finally:
        writer.close()

    assert loop.time() - silent_since >= 3 * HEARTBEAT_S * 0.99
    # Meanwhile the equally silent legacy client was neither pinged nor closed.
    assert conn in server.connections and conn.state is ConnState.OPEN
    assert conn.heartbeat is None
    assert legacy.connected
    assert len(legacy.received()) == frames_after_connect, legacy.received()
    response = await blocking(legacy.send_request, "echo", {"still": "here"}, timeout=WAIT_S)
    assert response is not None and response.payload == {"still": "here"}
    assert not any(is_ping(f) for f in legacy.received())
    await assert_legacy_alive(server, legacy)


# -- B. our client against the real 1.1.2 server -----------------------------------


def legacy_subscribers(srv: FrameworkServer, channel: str) -> list[str]:
    ch = srv.get_application(APP).get_channel(channel)
    return ch.get_subscribers() if ch is not None else []


async def barrier(client: IPCClient) -> None:
    """A request round trip: the 1.1.2 server handles one connection's frames in order."""
    response = await client.send_request("x", {"connection_id": client.connection_id, "value": "barrier"}, timeout=WAIT_S)
    assert response.payload == {"echo": "barrier", "server": "1.1.2"}


async def test_v2_client_detects_legacy_server(legacy_server: FrameworkServer, clients: Clients) -> None:
    client = await clients.v2(legacy_server.port)

    assert client.connected
    assert client.legacy is True
    assert client.get_connection_info()["protocol"] == 1
    assert client.server_info == {"status": "connected", "connection_id": client.connection_id}
    assert client.connection_id in legacy_server.connection_manager.list_connections()

    health = await asyncio.wait_for(client.health(timeout=WAIT_S), WAIT_S + 1)
    assert health["healthy"] is True
    assert health["protocol"] == 1
    await barrier(client)
    # A ping would have auto-created channel "system" in the 1.1.2 server's app.
    assert "system" not in legacy_server.get_application(APP).list_channels()
    assert client.connection_id in legacy_server.connection_manager.list_connections()


async def test_v2_request_to_legacy_handler(legacy_server: FrameworkServer, clients: Clients) -> None:
    client = await clients.v2(legacy_server.port)

    response = await client.send_request("x", {"connection_id": client.connection_id, "value": 42}, timeout=WAIT_S)
    assert response.message_type is MessageType.RESPONSE
    assert response.payload == {"echo": 42, "server": "1.1.2"}

    # Several in flight at once are told apart by reply_to.
    values = list(range(8))
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.request("x", {"connection_id": client.connection_id, "value": v}) for v in values)),
        WAIT_S,
    )
    assert [r["echo"] for r in responses] == values
    assert client.connected
    assert client.connection_id in legacy_server.connection_manager.list_connections()


async def test_v2_pubsub_through_legacy_server(legacy_server: FrameworkServer, clients: Clients) -> None:
    client = await clients.v2(legacy_server.port)
    received: asyncio.Queue[Message] = asyncio.Queue()
    await asyncio.wait_for(client.subscribe("news", received.put_nowait), WAIT_S)
    await barrier(client)
    assert legacy_subscribers(legacy_server, "news") == [client.connection_id]

    # Our own publication comes back through the 1.1.2 server.
    await client.publish("news", {"n": 1}, headers={"trace-id": "t-1"}, ack=True)
    msg = await asyncio.wait_for(received.get(), WAIT_S)
    assert msg.message_type is MessageType.PUBLISH
    assert msg.channel_id == "news"
    assert msg.payload == {"n": 1}

    # A real 1.1.2 client on the same server, both ways.
    legacy = await clients.legacy(legacy_server.port)
    inbox = Inbox()
    legacy.subscribe("news", inbox.put)
    response = await blocking(legacy.send_request, "x", {"connection_id": legacy.connection_id, "value": 0}, timeout=WAIT_S)
    assert response is not None  # the subscription is registered

    await client.publish("news", {"n": 2})
    [from_v2] = await inbox.get(1)
    assert from_v2.payload == {"n": 2}
    assert (await asyncio.wait_for(received.get(), WAIT_S)).payload == {"n": 2}

    await blocking(legacy.publish, "news", {"n": 3})
    msg = await asyncio.wait_for(received.get(), WAIT_S)
    assert msg.payload == {"n": 3}

    # Unsubscribing sends the connection_id too, so the 1.1.2 server drops us.
    await client.unsubscribe("news")
    await barrier(client)
    assert client.connection_id not in legacy_subscribers(legacy_server, "news")
    assert legacy.connection_id in legacy_subscribers(legacy_server, "news")

    assert client.connected
    assert client.connection_id in legacy_server.connection_manager.list_connections()
    assert await client.health_check() is True


class LegacyStylePeer:
    """A raw-socket server that speaks like 1.1.2: answers the connect without
    ``protocol``, parses every frame with the real 1.1.2 ``Message.from_json``
    (which rejects unknown fields), and answers requests on non-system channels."""

    def __init__(self) -> None:
        self.raw: list[str] = []
        self.parse_errors: list[str] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._count_changed = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await asyncio.wait_for(self._server.wait_closed(), WAIT_S)

    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.raw]

    async def wait_for_frames(self, count: int) -> list[dict[str, Any]]:
        async def until() -> None:
            while len(self.raw) < count:
                self._count_changed.clear()
                await self._count_changed.wait()

        await asyncio.wait_for(until(), WAIT_S)
        return self.frames()

    def _send(self, writer: asyncio.StreamWriter, msg: LegacyMessage) -> None:
        body = msg.to_json().encode("utf-8")
        writer.write(len(body).to_bytes(4, "big") + body)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                raw, _ = await read_frame(reader)
                self.raw.append(raw)
                self._count_changed.set()
                try:
                    msg = LegacyMessage.from_json(raw)
                except Exception as exc:  # what makes 1.1.2 drop the connection
                    self.parse_errors.append(f"{type(exc).__name__}: {exc}")
                    break
                if len(self.raw) == 1:
                    self._send(writer, LegacyMessage(
                        message_id="", app_id=msg.app_id, channel_id="system", message_type=LegacyType.RESPONSE,
                        payload={"status": "connected", "connection_id": msg.payload["connection_id"]}, timestamp=0,
                    ))
                elif msg.message_type is LegacyType.REQUEST and msg.channel_id != "system":
                    self._send(writer, msg.create_response({"echo": msg.payload}))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_v2_client_sends_only_the_seven_legacy_fields(clients: Clients) -> None:
    peer = LegacyStylePeer()
    await peer.start()
    try:
        client = await clients.v2(peer.port)
        assert client.legacy is True

        async def svc(msg: Message) -> None:
            return None

        await asyncio.wait_for(client.subscribe("news", lambda m: None), WAIT_S)
        assert await client.publish("news", {"n": 1}, headers={"trace-id": "t-1"}, ack=True) is None
        response = await client.send_request("x", {"value": 1}, headers={"trace-id": "t-2"}, timeout=WAIT_S)
        assert response.payload == {"echo": {"value": 1}}
        await client.notify("x", {"value": 2}, headers={"trace-id": "t-3"})
        await asyncio.wait_for(client.serve("svc", svc), WAIT_S)
        await client.unsubscribe("news")
        assert await client.health_check() is True
        response = await client.send_request("x", {"value": "last"}, timeout=WAIT_S)
        assert response.payload == {"echo": {"value": "last"}}

        frames = await peer.wait_for_frames(8)
        assert peer.parse_errors == []
        assert len(frames) == 8, frames
        for obj in frames:
            assert set(obj) == LEGACY_KEYS, obj
        assert [(f["message_type"], f["channel_id"]) for f in frames] == [
            ("request", "system"),  # connect
            ("subscribe", "news"),
            ("publish", "news"),
            ("request", "x"),
            ("notification", "x"),
            ("subscribe", "svc"),
            ("unsubscribe", "news"),
            ("request", "x"),
        ]
        assert frames[0]["payload"]["action"] == "connect"
        for f in frames:
            if f["message_type"] in ("subscribe", "unsubscribe"):
                assert f["payload"]["connection_id"] == client.connection_id  # a 1.1.2 server reads it there
        assert not any(is_ping(f) for f in frames)
        assert client.connected
    finally:
        await clients.close()
        await peer.close()
