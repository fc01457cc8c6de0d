"""Today's Python client against a 2.0.0 server (docs/protocol.md §15.1
item 3): a server whose connect reply has no ``features`` does not
negotiate, so it ignores a declared ``max_frame_size`` (§12.3) and
idempotency keys (§6.6), and does not screen numbers (§1.1). The client
must not count on any of the three there.

The 2.0.0 server is emulated, not run: ``OLD_REPLY`` is the connect reply a
real 2.0.0 server (commit 5ee088e, ``python -m ipc_server``) sent to a
connect asking for ``features`` and ``max_frame_size: 4096``, byte for
byte but for its ``message_id``, ``timestamp``, ``connection_id`` and
``reply_to``, which the peer below fills in. Today's server answers the
same connect with the same payload plus ``"features": [...]`` (``NEW_REPLY``,
the list left empty here: any list negotiates).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, FrameTooLarge, Message, encode_frame
from ipc_protocol.client_protocol import ClientProtocol, Connected
from ipc_protocol.protocol import ProtocolViolation

from .conftest import WAIT_S

OLD_REPLY = (
    '{"message_id":"f339220370571","app_id":"app","channel_id":"system","message_type":"response",'
    '"payload":{"status":"connected","connection_id":"c1","protocol":2,"server":"ipc-bridge/2.0.0",'
    '"heartbeat_interval_ms":15000,"max_frame_size":16777216},"timestamp":1796672840.8515081,"reply_to":"h1"}'
)
NEW_REPLY = OLD_REPLY.replace('"max_frame_size":16777216}', '"max_frame_size":16777216,"features":[]}')
BIG = "x" * 10_000  # a 10 KB answer: over the client's declared 4096, under the server's 16 MiB
HUGE = "9" * 309  # an integer past the largest double (§1.1)


def body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def response(request: dict[str, Any], payload_json: str) -> bytes:
    """A response as a 2.0.0 server relays it: the payload's bytes as they came."""
    frame = {"message_id": "s-" + request["message_id"], "app_id": request["app_id"], "channel_id": request["channel_id"],
             "message_type": "response", "payload": "@", "timestamp": 1.0, "reply_to": request["message_id"]}  # fmt: skip
    return body(frame).replace(b'"payload":"@"', b'"payload":' + payload_json.encode())


# -- the protocol core, on bytes ---------------------------------------------------------


def opened(reply: str, **kwargs: Any) -> tuple[ClientProtocol, Connected]:
    proto = ClientProtocol("app", "c1", client="test/1", features=("cancel", "streams"), **kwargs)
    hello = proto.connect()
    proto.data_to_send()
    (event,) = [proto.receive_frame(f) for f in proto.receive_data(encode_frame(reply.replace('"h1"', json.dumps(hello)).encode()))]
    assert isinstance(event, Connected)
    return proto, event


def frames(proto: ClientProtocol, raw: bytes) -> list[Message | Any]:
    return [proto.receive_frame(f) for f in proto.receive_data(encode_frame(raw))]


def test_a_reply_without_features_is_a_server_that_does_not_negotiate() -> None:
    old, old_event = opened(OLD_REPLY)
    new, new_event = opened(NEW_REPLY)
    assert (old.negotiates, old_event.negotiates, new.negotiates, new_event.negotiates) == (False, False, True, True)


def test_a_declared_limit_bounds_only_what_is_sent_to_a_server_that_does_not_negotiate() -> None:
    """§12.3: a 2.0.0 server never read our 4096, so what it sends is bounded by its own 16 MiB."""
    request = {"message_id": "r1", "app_id": "app", "channel_id": "svc.big"}
    old, event = opened(OLD_REPLY, max_frame_size=4096)
    assert (event.max_frame_size, old.send_limit, old.max_frame_size) == (4096, 4096, 16_777_216)
    (item,) = frames(old, response(request, json.dumps(BIG)))
    assert isinstance(item, Message) and item.payload == BIG
    new, event = opened(NEW_REPLY, max_frame_size=4096)
    assert (event.max_frame_size, new.send_limit, new.max_frame_size) == (4096, 4096, 4096)
    assert frames(new, response(request, json.dumps(BIG))) == []  # refused on its length prefix
    assert new.violation is not None and isinstance(new.violation.error, FrameTooLarge)


def test_with_no_declared_limit_a_server_that_does_not_negotiate_is_taken_at_its_own() -> None:
    """A 2.0.0 server started with a limit over 16 MiB sends up to it: accepted, as Node's."""
    old, event = opened(OLD_REPLY.replace('"max_frame_size":16777216', '"max_frame_size":67108864'))
    assert (event.max_frame_size, old.send_limit, old.max_frame_size) == (67_108_864, 67_108_864, 67_108_864)


def test_a_server_that_does_not_negotiate_is_screened_for_numbers_that_overflow() -> None:
    """§1.1: a 2.0.0 server relays a 309-digit integer as it came; only today's refuses it on the way in."""
    request = {"message_id": "r1", "app_id": "app", "channel_id": "n.x"}
    old, _ = opened(OLD_REPLY)
    (violation,) = frames(old, response(request, '{"n":%s}' % HUGE))
    assert isinstance(violation, ProtocolViolation) and violation.error is not None and violation.error.code == "bad_frame"
    new, _ = opened(NEW_REPLY)
    (item,) = frames(new, response(request, '{"n":%s}' % HUGE))
    assert isinstance(item, Message) and item.payload == {"n": int(HUGE)}  # not looked at again: its server screened it


# -- a scripted server, over real sockets ----------------------------------------------------


class ScriptedServer:
    """Answers each connect with ``replies[i]`` (the i-th connection's;
    the last one for any after), then each request as ``answer(request)``
    says: bytes to send back, or None to drop the connection unanswered."""

    def __init__(self, replies: list[str], answer: Any) -> None:
        self.replies = replies
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.got_request = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        reply = self.replies[min(self.connections, len(self.replies) - 1)]
        self.connections += 1
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big")
                msg = json.loads(await reader.readexactly(size))
                if msg["channel_id"] == "system" and isinstance(msg["payload"], dict) and msg["payload"].get("action") == "connect":
                    hello = reply.replace('"h1"', json.dumps(msg["message_id"])).replace('"c1"', json.dumps(msg["payload"]["connection_id"]))
                    writer.write(encode_frame(hello.encode()))
                elif msg["message_type"] == "request":
                    self.requests.append(msg)
                    self.got_request.set()
                    out = self.answer(msg)
                    if out is None:
                        writer.transport.abort()
                        return
                    writer.write(encode_frame(out))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_a_declared_limit_does_not_cost_the_connection_behind_a_2_0_0_server() -> None:
    """Before: the 10 KB answer broke the connection (too_large) and failed
    the call with ConnectionLost; now it is the call's answer, and the
    client still sends nothing over its own 4096."""
    peer = ScriptedServer([OLD_REPLY], lambda req: response(req, json.dumps(BIG)))
    port = await peer.start()
    client = IPCClient("app", "127.0.0.1", port, max_frame_size=4096, initial_delay=0.01, max_delay=0.02)
    lost: list[Any] = []
    client.on("disconnected", lambda *a: lost.append(a))
    try:
        await asyncio.wait_for(client.connect(), WAIT_S)
        assert await asyncio.wait_for(client.request("svc.big", {}), WAIT_S) == BIG
        with pytest.raises(FrameTooLarge):
            await client.request("svc.big", "y" * 5000)
        assert lost == [] and peer.connections == 1
    finally:
        await client.disconnect()
        await peer.close()


@pytest.mark.parametrize(
    ("first", "then"), [(OLD_REPLY, OLD_REPLY), (NEW_REPLY, OLD_REPLY), (OLD_REPLY, NEW_REPLY)], ids=["old-old", "new-old", "old-new"]
)
async def test_a_keyed_request_is_not_resent_unless_both_servers_negotiate(first: str, then: str) -> None:
    """A 2.0.0 server ignores the key: a resend would run the request again
    (the probe saw 2 runs). It fails with ConnectionLost as every call in
    flight does at a loss, sent once."""
    peer = ScriptedServer([first, then], lambda req: None if len(peer.requests) == 1 else response(req, '"ran"'))
    port = await peer.start()
    client = IPCClient("app", "127.0.0.1", port, initial_delay=0.01, max_delay=0.02)
    try:
        await asyncio.wait_for(client.connect(), WAIT_S)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(client.request("pay.charge", {"amount": 10}, idempotency_key="order-42", timeout=WAIT_S), WAIT_S)
        assert len(peer.requests) == 1
    finally:
        await client.disconnect()
        await peer.close()


async def test_a_keyed_request_is_resent_between_servers_that_negotiate() -> None:
    peer = ScriptedServer([NEW_REPLY], lambda req: None if len(peer.requests) == 1 else response(req, '"ran"'))
    port = await peer.start()
    client = IPCClient("app", "127.0.0.1", port, initial_delay=0.01, max_delay=0.02)
    try:
        await asyncio.wait_for(client.connect(), WAIT_S)
        assert await asyncio.wait_for(client.request("pay.charge", {"amount": 10}, idempotency_key="order-42", timeout=WAIT_S), WAIT_S) == "ran"
        assert [r["headers"]["idempotency-key"] for r in peer.requests] == ["order-42", "order-42"]
    finally:
        await client.disconnect()
        await peer.close()
