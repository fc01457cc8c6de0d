"""The Node client and version 1, the legacy ``ipc-framework`` 1.1.2 package
(docs/protocol.md §10), checked against the real package: the Node client
against the 1.1.2 server (it falls back to the seven v1 fields, no acks, no
pings, connection_id in subscribe payloads), and a 1.1.2 Python client
receiving a Node client's publications through our server."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

ipc_framework = pytest.importorskip("ipc_framework")
from ipc_framework import FrameworkClient, FrameworkServer  # noqa: E402
from ipc_framework.core import Message as LegacyMessage  # noqa: E402
from ipc_framework.core import MessageType as LegacyType  # noqa: E402

from conftest import WAIT_S  # noqa: E402

LEGACY_KEYS = {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"}


@pytest.fixture
def legacy_server():
    server = FrameworkServer("127.0.0.1", 0)
    server.start()
    server.port = server.server_socket.getsockname()[1]
    yield server
    server.stop()


@pytest.fixture
def sent_frames(monkeypatch):
    """Every frame body the 1.1.2 server receives, as parsed JSON."""
    frames: list[dict] = []
    original = FrameworkServer._receive_message

    def spy(self, sock):
        data = original(self, sock)
        if data:
            frames.append(json.loads(data))
        return data

    monkeypatch.setattr(FrameworkServer, "_receive_message", spy)
    return frames


async def test_node_client_talks_version_1_to_a_legacy_server(sent_frames, legacy_server, node_agent):
    agent = await node_agent(legacy_server.port, app_id="legacy")
    info = await agent.call("info")
    assert info["protocol"] == 1
    assert info["heartbeatIntervalMs"] is None  # a version-1 server is never pinged
    await agent.call("subscribe", channel="news")  # no ack to wait for
    res = await agent.call("publish", channel="news", payload={"héllo": "wörld"}, ack=True, headers={"x": "y"})
    assert res == {"delivered": None}
    got = await agent.wait_event("message")  # 1.1.x delivers to the publisher too
    assert got["payload"] == {"héllo": "wörld"}
    assert all(set(f) == LEGACY_KEYS for f in sent_frames), sent_frames
    subscribe = next(f for f in sent_frames if f["message_type"] == "subscribe")
    assert subscribe["payload"]["connection_id"] == info["connectionId"]


async def test_legacy_python_client_receives_node_publications_through_our_server(server, node_agent):
    received: list = []
    arrived = threading.Event()

    def on_message(msg):
        received.append(msg.payload)
        arrived.set()

    legacy = FrameworkClient("app", "127.0.0.1", server.port)
    assert await asyncio.to_thread(legacy.connect)
    try:
        await asyncio.to_thread(legacy.subscribe, "legacy.news", on_message)
        agent = await node_agent(server.port)
        # The subscribe above is fire-and-forget in 1.1.2 (no ack), and reaches
        # the server on another connection: publish until the server counts it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while (await agent.call("publish", channel="legacy.news", payload={"n": 1}, ack=True, headers={"h": "v"}))["delivered"] != 1:
            assert loop.time() < deadline, "the legacy subscription never reached the server"
        assert await asyncio.to_thread(arrived.wait, WAIT_S)
        assert received[0] == {"n": 1}
    finally:
        await asyncio.to_thread(legacy.disconnect)


async def test_node_client_gets_legacy_error_answers_as_errors_and_checks_health_without_pinging(sent_frames, legacy_server, node_agent):
    # A 1.1.x handler answers an error the §10 way: a payload that is exactly {"error": {...}}.
    def reply(msg, payload):
        conn = legacy_server.connection_manager.get_connection(msg.payload["connection_id"])
        legacy_server.send_to_connection(conn, msg.create_response(payload))

    app = legacy_server.create_application("legacy")
    app.create_channel("fail").set_handler(
        LegacyType.REQUEST, lambda msg: reply(msg, {"error": {"code": "handler_error", "message": "bad value", "remote_type": "ValueError"}})
    )
    app.create_channel("gone").set_handler(LegacyType.REQUEST, lambda msg: reply(msg, {"error": {"code": "no_responders", "message": "nobody"}}))
    app.create_channel("echo").set_handler(LegacyType.REQUEST, lambda msg: reply(msg, {"echo": msg.payload.get("value"), "error": None}))
    not_objects = {"text": "User not found", "null": None, "false": False, "list": ["a"]}
    for channel, value in not_objects.items():
        app.create_channel(channel).set_handler(LegacyType.REQUEST, lambda msg, value=value: reply(msg, {"error": value}))
    agent = await node_agent(legacy_server.port, app_id="legacy")
    cid = (await agent.call("info"))["connectionId"]

    err = await agent.call_error("request", channel="fail", payload={"connection_id": cid})
    assert (err["code"], err["name"], err["remoteType"], err["message"]) == ("handler_error", "HandlerError", "ValueError", "bad value")
    err = await agent.call_error("request", channel="gone", payload={"connection_id": cid})
    assert (err["code"], err["name"]) == ("no_responders", "NoRespondersError")
    # A payload with other keys besides "error" is an ordinary result.
    res = await agent.call("request", channel="echo", payload={"connection_id": cid, "value": 7})
    assert res["payload"] == {"echo": 7, "error": None}
    # So is {"error": <not an object>}: only an error object is an error answer (docs/legacy.md), as in Python.
    for channel, value in not_objects.items():
        res = await agent.call("request", channel=channel, payload={"connection_id": cid})
        assert res["payload"] == {"error": value}, channel

    # A 1.1.x server never answers pings: health comes from the connection state.
    health = await agent.call("health")
    assert (health["healthy"], health["latencyMs"], health["state"]) == (True, None, "connected")
    assert not any(isinstance(f["payload"], dict) and f["payload"].get("action") == "ping" for f in sent_frames)


async def test_node_client_gets_a_legacy_server_s_notification_broadcasts(legacy_server, node_agent):
    # The 1.1.x server broadcasts as its examples/basic_server.py does: a NOTIFICATION through _handle_publish.
    agent = await node_agent(legacy_server.port, app_id="legacy")
    await agent.call("subscribe", channel="alerts")
    cid = (await agent.call("info"))["connectionId"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    # No ack from 1.1.x: wait until it holds the subscription (its channel is made by the subscribe, in its own thread).
    while (channel := legacy_server.get_application("legacy").get_channel("alerts")) is None or cid not in channel.get_subscribers():
        assert loop.time() < deadline, "the subscription never reached the 1.1.2 server"
        await asyncio.sleep(0.01)

    def broadcast(mtype, payload):
        msg = LegacyMessage(message_id="", app_id="legacy", channel_id="alerts", message_type=mtype, payload=payload, timestamp=time.time())
        legacy_server._handle_publish(msg, channel)

    await asyncio.to_thread(broadcast, LegacyType.NOTIFICATION, {"type": "high_cpu_alert", "value": 95})
    await asyncio.to_thread(broadcast, LegacyType.PUBLISH, {"type": "as_publish"})
    first = await agent.wait_event("message")
    second = await agent.wait_event("message")
    assert [first["payload"], second["payload"]] == [{"type": "high_cpu_alert", "value": 95}, {"type": "as_publish"}]
    assert not [e for e in agent.events if e["event"] == "error"]


async def test_node_client_refuses_what_a_legacy_server_lacks(sent_frames, legacy_server, node_agent):
    agent = await node_agent(legacy_server.port, app_id="legacy")
    err = await agent.call_error("serve", channel="svc", kind="echo")
    assert (err["code"], err["name"]) == ("bad_message", "MessageError") and "version-2 server" in err["message"]
    for pattern in ("w.*", "w.>"):
        err = await agent.call_error("subscribe", channel=pattern)
        assert (err["code"], err["name"]) == ("bad_message", "MessageError") and "wildcard" in err["message"]
    info = await agent.call("info")
    assert (info["responders"], info["subscriptions"]) == ([], [])
    await agent.call("subscribe", channel="news")  # an exact name works
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not any(f["message_type"] == "subscribe" for f in sent_frames):
        assert loop.time() < deadline, "the subscribe never reached the 1.1.2 server"
        await asyncio.sleep(0.01)
    assert [f["channel_id"] for f in sent_frames if f["message_type"] == "subscribe"] == ["news"]
