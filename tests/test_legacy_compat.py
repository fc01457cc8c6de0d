"""Wire compatibility with the legacy ``ipc-framework`` 1.1.2 package
(docs/protocol.md §3, §9, §10), checked against the real package: its
``FrameworkClient`` against our ``IPCServer`` (our client against its
``FrameworkServer``: tests/test_legacy_server.py; the shared parts:
tests/legacy_support.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ipc_framework.core import Message as LegacyMessage
from ipc_framework.core import MessageType as LegacyType

from ipc_protocol import HandlerError, Message, MessageType, NoResponders
from ipc_server import IPCServer
from ipc_server.connection import ConnState

from .legacy_support import (  # noqa: F401 - server and clients are fixtures
    APP, HEARTBEAT_S, LEGACY_KEYS, WAIT_S, Clients, Inbox, assert_legacy_alive, assert_legacy_frames, blocking, clients, frame,
    is_ping, legacy_error, read_frame, server, server_conn,
)


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

    # A wildcard inside a token is no channel for any client, a 1.1.x one included (§4.3).
    response = await blocking(legacy.send_request, "ord*", {}, timeout=WAIT_S)
    assert legacy_error(response, "bad_message")["message"] == "channel 'ord*': wildcards must be whole tokens"
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

