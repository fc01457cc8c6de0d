"""Wire compatibility with the legacy ``ipc-framework`` 1.1.2 package
(docs/protocol.md §3, §10): our ``IPCClient`` against the real 1.1.2
``FrameworkServer``, and against a raw-socket peer that parses every frame
the client sends as 1.1.2 does (its client against our server:
tests/test_legacy_compat.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from ipc_framework import FrameworkServer
from ipc_framework.core import Message as LegacyMessage
from ipc_framework.core import MessageType as LegacyType

from ipc_client import IPCClient
from ipc_protocol import HandlerError, Message, MessageError, MessageType, RemoteError

from .legacy_support import (  # noqa: F401 - clients and legacy_server are fixtures
    APP, LEGACY_KEYS, WAIT_S, Clients, Inbox, blocking, clients, free_port, is_ping, legacy_server, read_frame,
)


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


async def test_an_acked_publish_queued_before_a_legacy_server_answers_returns_none() -> None:
    """An acked publish made before the client knew its server, replayed to
    a 1.1.2 one, ends as one made while connected to it: written, None
    (docs/legacy.md), not a timeout waiting for an ack 1.1.2 never sends."""
    port = free_port()
    client = IPCClient(APP, "127.0.0.1", port, wait_on_first_connect=True, initial_delay=0.05, max_delay=0.1, request_timeout=WAIT_S)
    connecting = asyncio.ensure_future(client.connect())
    published = asyncio.ensure_future(client.publish("news", {"n": 1}, ack=True, timeout=WAIT_S))
    async with asyncio.timeout(WAIT_S):
        while client.queue_stats()["size"] < 1:
            await asyncio.sleep(0.01)
    srv = FrameworkServer(host="127.0.0.1", port=port)
    await blocking(srv.start)
    srv.create_application(APP)
    try:
        await asyncio.wait_for(connecting, WAIT_S)
        assert client.legacy is True
        assert await asyncio.wait_for(published, WAIT_S) is None
        assert client.queue_stats()["size"] == 0
    finally:
        await asyncio.wait_for(client.disconnect(), WAIT_S)
        await blocking(srv.stop)


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
        with pytest.raises(MessageError):  # refused here, nothing sent (docs/legacy.md)
            client.serve("svc", svc)
        await client.unsubscribe("news")
        assert await client.health_check() is True
        response = await client.send_request("x", {"value": "last"}, timeout=WAIT_S)
        assert response.payload == {"echo": {"value": "last"}}

        frames = await peer.wait_for_frames(7)
        assert peer.parse_errors == []
        assert len(frames) == 7, frames
        for obj in frames:
            assert set(obj) == LEGACY_KEYS, obj
        assert [(f["message_type"], f["channel_id"]) for f in frames] == [
            ("request", "system"),  # connect
            ("subscribe", "news"),
            ("publish", "news"),
            ("request", "x"),
            ("notification", "x"),
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



async def test_v2_client_raises_only_an_error_object_as_the_whole_payload(legacy_server: FrameworkServer, clients: Clients) -> None:
    """docs/legacy.md: a 1.1.x handler's reply ``{"error": {...}}`` (an
    object) raises the matching exception; ``{"error": <anything else>}``
    or ``error`` beside other keys is the handler's data, as in Node."""
    replies: dict[str, Any] = {
        "obj": {"error": {"code": "handler_error", "message": "bad value", "remote_type": "ValueError"}},
        "custom": {"error": {"code": "not_found", "message": "no such user"}},
        "text": {"error": "User not found"},
        "null": {"error": None},
        "false": {"error": False},
        "list": {"error": ["a"]},
        "plus": {"error": {"code": "x", "message": "y"}, "result": 5},
    }
    app = legacy_server.get_application(APP)
    for channel, payload in replies.items():
        def answer(msg: LegacyMessage, payload: Any = payload) -> None:
            conn = legacy_server.connection_manager.get_connection(msg.payload["connection_id"])
            legacy_server.send_to_connection(conn, msg.create_response(payload))

        app.create_channel(channel).set_handler(LegacyType.REQUEST, answer)
    client = await clients.v2(legacy_server.port)
    ask = {"connection_id": client.connection_id}

    with pytest.raises(HandlerError) as handler_error:
        await client.send_request("obj", ask, timeout=WAIT_S)
    assert (str(handler_error.value.remote_type), handler_error.value.code) == ("ValueError", "handler_error")
    with pytest.raises(RemoteError) as custom:
        await client.send_request("custom", ask, timeout=WAIT_S)
    assert custom.value.code == "not_found" and "no such user" in str(custom.value)
    for channel in ("text", "null", "false", "list", "plus"):
        response = await client.send_request(channel, ask, timeout=WAIT_S)
        assert response.payload == replies[channel], channel
    assert client.connected


def broadcast(srv: FrameworkServer, channel: str, mtype: LegacyType, payload: Any) -> None:
    """A 1.1.x server's own broadcast, as ipc_framework/examples/basic_server.py sends chat, status and alerts."""
    msg = LegacyMessage(message_id="", app_id=APP, channel_id=channel, message_type=mtype, payload=payload, timestamp=time.time())
    srv._handle_publish(msg, srv.get_application(APP).get_channel(channel))


async def test_v2_client_gets_a_legacy_server_s_notification_broadcasts(legacy_server: FrameworkServer, clients: Clients) -> None:
    """docs/legacy.md: on a version-1 connection a notification is a
    broadcast to the channel's subscribers, as the 1.1.x client treats it."""
    client = await clients.v2(legacy_server.port)
    errors: list[BaseException] = []
    client.on("error", errors.append)
    received: asyncio.Queue[Message] = asyncio.Queue()
    await asyncio.wait_for(client.subscribe("alerts", received.put_nowait), WAIT_S)
    await barrier(client)

    await blocking(broadcast, legacy_server, "alerts", LegacyType.NOTIFICATION, {"type": "high_cpu_alert", "value": 95})
    await blocking(broadcast, legacy_server, "alerts", LegacyType.PUBLISH, {"type": "as_publish"})
    first = await asyncio.wait_for(received.get(), WAIT_S)
    assert (first.message_type, first.channel_id, first.payload) == (MessageType.NOTIFICATION, "alerts", {"type": "high_cpu_alert", "value": 95})
    second = await asyncio.wait_for(received.get(), WAIT_S)
    assert (second.message_type, second.payload) == (MessageType.PUBLISH, {"type": "as_publish"})
    assert errors == [] and client.connected


def server_frames(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every frame the 1.1.2 server receives from now on, parsed."""
    frames: list[dict[str, Any]] = []
    original = FrameworkServer._receive_message

    def spy(self: FrameworkServer, sock: Any) -> Any:
        data = original(self, sock)
        if data:
            frames.append(json.loads(data))
        return data

    monkeypatch.setattr(FrameworkServer, "_receive_message", spy)
    return frames


async def test_v2_client_refuses_what_a_legacy_server_lacks(legacy_server: FrameworkServer, clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/legacy.md: responders and wildcard subscriptions stay unavailable
    with a 1.1.x server; asking for them raises MessageError, sends nothing."""
    frames = server_frames(monkeypatch)
    client = await clients.v2(legacy_server.port)
    with pytest.raises(MessageError, match="needs a version-2 server") as refused:
        client.serve("svc", lambda msg: 1)
    assert refused.value.code == "bad_message"
    for pattern in ("w.*", "w.>"):
        with pytest.raises(MessageError, match="wildcard subscriptions need a version-2 server"):
            await client.subscribe(pattern, lambda msg: None)
    info = client.get_connection_info()
    assert (info["services"], info["subscriptions"]) == ([], [])
    await barrier(client)
    assert [f["message_type"] for f in frames if f["message_type"] in ("subscribe", "unsubscribe")] == []
    assert client.connected


async def test_registrations_made_before_connecting_are_refused_on_error(legacy_server: FrameworkServer, clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    """Made before the client knew its server, a responder or a wildcard
    subscription is refused when the restore finds a 1.1.x server: an
    ``error`` event names each (as for any refused replay), the responder's
    Registration raises, a subscribe() waiting for the connection raises,
    and the rest is restored."""
    frames = server_frames(monkeypatch)
    client = IPCClient(APP, "127.0.0.1", legacy_server.port, reconnect=False, connect_timeout=WAIT_S, request_timeout=WAIT_S)
    clients.v2_clients.append(client)
    errors: list[BaseException] = []
    client.on("error", errors.append)
    received: asyncio.Queue[Message] = asyncio.Queue()
    await client.subscribe("news", received.put_nowait)
    await client.subscribe("w.*", lambda msg: None)
    registration = client.serve("svc", lambda msg: 1)
    connecting = asyncio.ensure_future(client.connect())
    await asyncio.sleep(0)  # connect() has begun: a subscribe now waits for it
    with pytest.raises(MessageError, match="wildcard"):
        await asyncio.wait_for(client.subscribe("v.>", lambda msg: None), WAIT_S)
    assert await asyncio.wait_for(connecting, WAIT_S) is True

    with pytest.raises(MessageError, match="needs a version-2 server"):
        await asyncio.wait_for(registration, WAIT_S)
    assert all(isinstance(e, MessageError) for e in errors), errors
    assert sorted(str(e).split("(", 1)[1].split(")", 1)[0] for e in errors) == ["'svc'", "'v.>'", "'w.*'"]
    info = client.get_connection_info()
    assert (info["services"], info["subscriptions"]) == ([], ["news"])
    await barrier(client)
    assert [(f["message_type"], f["channel_id"]) for f in frames if f["message_type"] == "subscribe"] == [("subscribe", "news")]
    await client.publish("news", {"n": 1})
    assert (await asyncio.wait_for(received.get(), WAIT_S)).payload == {"n": 1}
