"""Legacy ``ipc-framework`` 1.1.2 clients on a server with users
(docs/security.md §3): they cannot present credentials, so they are
refused ``unauthorized`` unless the users file has an ``anonymous`` user,
whose own permissions they then get, with ``forbidden`` answers in the
version-1 form (the error in the payload, docs/protocol.md §10)."""

from __future__ import annotations

from pathlib import Path

from ipc_protocol import Message
from ipc_server import IPCServer
from ipc_server.users import hash_token

from .legacy_support import APP, Clients, Inbox, RecordingLegacyClient, WAIT_S, blocking

OWNER = f"""
[users.owner]
token_hash = "{hash_token("t", log_n=4)}"
apps = ["{APP}"]
"""
ANONYMOUS = f"""
[users.anonymous]
apps = ["{APP}"]
publish = ["news.>"]
subscribe = ["news.>"]
request = ["math.add"]
"""


async def start(tmp_path: Path, text: str) -> IPCServer:
    path = tmp_path / "users.toml"
    path.write_text(text)
    server = IPCServer("127.0.0.1", 0, users_file=str(path), shutdown_grace_s=0.5)
    await server.start()
    return server


async def test_without_an_anonymous_user_a_legacy_client_is_refused(tmp_path: Path) -> None:
    server = await start(tmp_path, OWNER)
    client = RecordingLegacyClient(APP, host="127.0.0.1", port=server.port, connection_timeout=WAIT_S)
    try:
        assert await blocking(client.connect) is False
        [answer] = client.received()
        assert answer["payload"]["error"]["code"] == "unauthorized"
        assert "credentials required" in answer["payload"]["error"]["message"]
        assert server.stats.snapshot()["errors"].get("unauthorized") == 1
    finally:
        if client.socket is not None:
            client.socket.close()
        await server.close()


async def test_with_an_anonymous_user_a_legacy_client_gets_its_permissions(tmp_path: Path) -> None:
    server = await start(tmp_path, OWNER + ANONYMOUS)

    @server.handler("math.add")
    async def add(msg: Message) -> int:
        return msg.payload["a"] + msg.payload["b"]

    @server.handler("math.mul")
    async def mul(msg: Message) -> int:
        return msg.payload["a"] * msg.payload["b"]

    clients = Clients()
    try:
        legacy = await clients.legacy(server.port)
        inbox = Inbox()
        assert legacy.subscribe("news.today", inbox.put) is True
        assert legacy.subscribe("sports", inbox.put) is True  # refused: the answer carries the error
        answer = await blocking(legacy.send_request, "math.add", {"a": 2, "b": 3}, WAIT_S)
        assert answer is not None and answer.payload == 5
        denied = await blocking(legacy.send_request, "math.mul", {"a": 2, "b": 3}, WAIT_S)
        assert denied is not None and denied.payload["error"]["code"] == "forbidden"
        assert denied.payload["error"]["message"] == "user 'anonymous' may not request on 'math.mul'"
        await blocking(legacy.publish, "news.today", {"n": 1})
        [msg] = await inbox.get(1)
        assert msg.payload == {"n": 1}
        await blocking(legacy.publish, "sports", {"n": 2})
        assert await blocking(legacy.ping) is True  # frames of one connection are handled in order
        errors = [f["payload"]["error"] for f in legacy.received() if isinstance(f.get("payload"), dict) and "error" in f["payload"]]
        assert [(e["code"], e["message"]) for e in errors] == [
            ("forbidden", "user 'anonymous' may not subscribe to 'sports'"),
            ("forbidden", "user 'anonymous' may not request on 'math.mul'"),
            ("forbidden", "user 'anonymous' may not publish on 'sports'"),
        ]
        assert all(set(f) == {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"} for f in legacy.received())
        assert legacy.connected
    finally:
        await clients.close()
        await server.close()


async def test_anonymous_rights_do_not_reach_other_apps(tmp_path: Path) -> None:
    server = await start(tmp_path, OWNER + ANONYMOUS)
    client = RecordingLegacyClient("elsewhere", host="127.0.0.1", port=server.port, connection_timeout=WAIT_S)
    try:
        assert await blocking(client.connect) is False
        [answer] = client.received()
        assert answer["payload"]["error"] == {"code": "unauthorized", "message": "user 'anonymous' may not connect as app 'elsewhere'"}
    finally:
        if client.socket is not None:
            client.socket.close()
        await server.close()
