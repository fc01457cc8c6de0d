"""Relaying through the server without re-encoding: a request forwarded to a
responder and its answer travel as the sender's own bytes between version-2
peers; ids that collide at one responder, legacy peers and answers from the
wrong connection fall back to rewriting or are ignored (docs/protocol.md
§5.3, §7.3, §10)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ipc_protocol import encode_frame
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame


async def recv_body(peer: RawPeer, timeout: float = WAIT_S) -> bytes:
    """The next frame's body, exactly as the server wrote it."""
    assert not peer.frames, "decoded frames are pending; read them with recv()"
    bodies: list[bytes] = getattr(peer, "bodies", [])
    peer.bodies = bodies  # type: ignore[attr-defined]
    async with asyncio.timeout(timeout):
        while not bodies:
            data = await peer.reader.read(65536)
            if not data:
                raise EOFError("connection closed")
            bodies += peer.decoder.feed(data)
    return bodies.pop(0)


async def responder(raw: Any, channel: str = "svc", *, protocol: int | None = 2) -> RawPeer:
    peer = await raw()
    await peer.handshake(protocol=protocol)
    peer.send(frame("subscribe", channel, {"serve": True}, message_id=f"serve-{channel}"))
    if protocol is not None:  # version 1 gets no ack (§10)
        assert (await peer.recv()).payload == {"status": "serving"}
    else:
        await synced(peer)
    return peer


async def synced(peer: RawPeer) -> None:
    """Return once the server has handled everything ``peer`` sent so far."""
    peer.send(frame("request", "system", {"action": "ping"}, message_id="sync"))
    assert (await peer.recv()).reply_to == "sync"


async def requester(raw: Any, *, protocol: int | None = 2) -> RawPeer:
    peer = await raw()
    await peer.handshake(protocol=protocol)
    return peer


def answer(request: dict[str, Any], payload: Any, **extra: Any) -> dict[str, Any]:
    return frame("response", request["channel_id"], payload, message_id=f"ans-{request['message_id']}", reply_to=request["message_id"], **extra)


async def test_request_and_answer_are_relayed_as_the_senders_bytes(raw) -> None:
    worker = await responder(raw)
    caller = await requester(raw)
    # Not the canonical encoding: spaces, another field order, an unknown field.
    request = (
        b'{"app_id": "app", "message_id": "q-1", "channel_id": "svc", "message_type": "request",'
        b' "payload": {"n": 1.50}, "timestamp": 12, "headers": {"trace": "t"}, "timeout_ms": 4000, "x-extra": [1]}'
    )
    caller.send_raw(encode_frame(request))
    assert await recv_body(worker) == request
    reply = b'{"message_id": "a-1", "app_id": "app", "channel_id": "svc", "message_type": "response", "payload": {"n": 3}, "reply_to": "q-1", "x-more": true}'
    worker.send_raw(encode_frame(reply))
    assert await recv_body(caller) == reply


async def test_notification_is_relayed_as_the_senders_bytes(raw) -> None:
    worker = await responder(raw)
    caller = await requester(raw)
    note = json.dumps(frame("notification", "svc", {"k": "v"}, message_id="n-1"), indent=1).encode()
    caller.send_raw(encode_frame(note))
    assert await recv_body(worker) == note


async def test_same_id_from_two_requesters_at_one_responder(server: IPCServer, raw) -> None:
    worker = await responder(raw)
    a, b = await requester(raw), await requester(raw)
    a.send(frame("request", "svc", "from a", message_id="dup", timeout_ms=5000))
    first = await worker.recv()
    b.send(frame("request", "svc", "from b", message_id="dup", timeout_ms=5000))
    second = await worker.recv()
    assert first.message_id == "dup" and first.payload == "from a"
    assert second.message_id != "dup" and second.payload == "from b"  # a server id
    # Answered in reverse order: each requester gets its own answer.
    for req in (second, first):
        worker.send(answer(req.model_dump(mode="json"), f"answer to {req.payload}"))
    got_a, got_b = await a.recv(), await b.recv()
    assert (got_a.reply_to, got_a.payload) == ("dup", "answer to from a")
    assert (got_b.reply_to, got_b.payload) == ("dup", "answer to from b")
    assert " forwarded=0 " in repr(server)  # nothing left waiting


async def test_requesters_id_that_looks_like_a_server_id(server: IPCServer, raw) -> None:
    worker = await responder(raw)
    a, b, c = await requester(raw), await requester(raw), await requester(raw)
    a.send(frame("request", "svc", "a", message_id="x"))
    b.send(frame("request", "svc", "b", message_id="x"))
    got = [await worker.recv(), await worker.recv()]
    server_id = got[1].message_id
    c.send(frame("request", "svc", "c", message_id=server_id))  # taken at this responder
    got.append(await worker.recv())
    assert len({m.message_id for m in got}) == 3
    for req in got:
        worker.send(answer(req.model_dump(mode="json"), req.payload))
    assert [(await p.recv()).payload for p in (a, b, c)] == ["a", "b", "c"]


async def test_answer_from_another_responder_is_ignored(server: IPCServer, raw) -> None:
    right = await responder(raw, "svc.one")
    wrong = await responder(raw, "svc.two")
    caller = await requester(raw)
    caller.send(frame("request", "svc.one", 1, message_id="q"))
    req = (await right.recv()).model_dump(mode="json")
    wrong.send(answer(req, "forged"))  # reply_to names a request forwarded to `right`
    await synced(wrong)  # the server has read the forgery
    assert " forwarded=1 " in repr(server)  # the genuine request still waits
    right.send(answer(req, "genuine"))
    got = await caller.recv()
    assert (got.reply_to, got.payload) == ("q", "genuine")
    await synced(caller)  # the next frame answers the ping: nothing else came


async def test_relayed_error_answer_is_counted(server: IPCServer, raw) -> None:
    worker = await responder(raw)
    caller = await requester(raw)
    before = server.stats.errors["handler_error"]
    caller.send(frame("request", "svc", None, message_id="q"))
    req = (await worker.recv()).model_dump(mode="json")
    worker.send(answer(req, None, error={"code": "handler_error", "message": "boom", "remote_type": "ValueError"}))
    got = await caller.recv()
    assert got.error.code == "handler_error" and got.error.remote_type == "ValueError"
    assert server.stats.errors["handler_error"] == before + 1


async def test_legacy_requester_to_v2_responder(raw) -> None:
    worker = await responder(raw)
    caller = await requester(raw, protocol=None)
    caller.send(frame("request", "svc", {"v": 1}, message_id="legacy-q"))
    req = await worker.recv()
    assert req.message_id != "legacy-q" and req.payload == {"v": 1}  # rewritten, a server id
    worker.send(answer(req.model_dump(mode="json"), {"ok": True}, headers={"h": "1"}))
    body = await recv_body(caller)
    got = json.loads(body)
    assert got["reply_to"] == "legacy-q" and got["payload"] == {"ok": True}
    assert set(got) == {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"}


async def test_v2_requester_to_legacy_responder(raw) -> None:
    worker = await responder(raw, protocol=None)
    caller = await requester(raw)
    caller.send(frame("request", "svc", {"v": 2}, message_id="v2-q", headers={"h": "1"}, timeout_ms=5000))
    body = await recv_body(worker)
    req = json.loads(body)
    assert req["message_id"] != "v2-q" and req["payload"] == {"v": 2}
    assert set(req) == {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"}
    worker.send(answer(req, {"error": {"code": "handler_error", "message": "v1 style"}}))
    got = await caller.recv()
    assert got.reply_to == "v2-q" and got.payload == {"error": {"code": "handler_error", "message": "v1 style"}}


async def test_publish_reaches_every_v2_subscriber_as_the_publishers_bytes(raw) -> None:
    subs = [await requester(raw) for _ in range(2)]
    legacy = await requester(raw, protocol=None)
    for i, peer in enumerate([*subs, legacy]):
        peer.send(frame("subscribe", "news", None, message_id=f"sub-{i}"))
    for peer in subs:
        assert (await peer.recv()).payload == {"status": "subscribed"}
    await synced(legacy)
    publisher = await requester(raw)
    body = json.dumps(frame("publish", "news", {"n": 1}, message_id="p-1", headers={"h": "1"}), indent=1).encode()
    publisher.send_raw(encode_frame(body))
    assert [await recv_body(peer) for peer in subs] == [body, body]
    got = json.loads(await recv_body(legacy))
    assert got["message_id"] == "p-1" and "headers" not in got


def server_side(server: IPCServer, client: Any) -> Any:
    return next(conn for conn in server.connections if conn.connection_id == client.connection_id)


async def test_payloads_stay_in_relayed_frames_until_a_connection_calls_an_in_process_handler(server: IPCServer, make_client) -> None:
    """The server leaves payloads in the frames it relays (ipc_protocol.relayed),
    handlers or not; a connection's frames are decoded whole from the read
    after its first call of an in-process handler, so later ones are not
    parsed twice, and left in their frames again once no handler is left."""
    seen: list[bool] = []

    async def add(msg: Any) -> int:
        seen.append("payload" in msg.__dict__)
        return msg.payload["a"] + msg.payload["b"]

    server.add_handler("sum", add)
    client, publisher, sub = await make_client(), await make_client(), await make_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await sub.subscribe("news", got.put_nowait)
    await publisher.publish("news", {"n": 1}, ack=True)
    assert (await asyncio.wait_for(got.get(), WAIT_S)).payload == {"n": 1}
    assert server_side(server, publisher).protocol.defer_payloads  # a publisher with handlers about
    assert await client.request("sum", {"a": 1, "b": 2}) == 3  # decoded on read, then read by the handler
    assert await client.request("sum", {"a": 3, "b": 4}) == 7
    assert seen == [False, True] and not server_side(server, client).protocol.defer_payloads
    server.remove_handler("sum")
    rsp = await make_client()
    await rsp.serve("sum", lambda msg: msg.payload["a"] * msg.payload["b"])
    assert await client.request("sum", {"a": 4, "b": 5}) == 20  # relayed, its payload left in the frame
    assert server_side(server, client).protocol.defer_payloads
