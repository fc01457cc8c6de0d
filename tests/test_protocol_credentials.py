"""The connect's credentials in the server's protocol core, on bytes alone
(docs/protocol.md §3): ``user`` and ``token`` are handed to the server
with the connect, which accepts or refuses the pending connect later while
the connection stays in the handshake state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipc_protocol import FrameDecoder, Message, MessageType, encode_frame, encode_message
from ipc_protocol.messages import connect_request
from ipc_protocol.protocol import ProtocolState, ProtocolStateError, ProtocolViolation
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol


def connect(proto: ServerProtocol, payload: dict[str, Any]) -> Any:
    hello = Message.build(MessageType.REQUEST, "shop", "system", {"action": "connect", **payload})
    [body] = proto.receive_data(encode_frame(encode_message(hello)))
    return proto.receive_frame(body)


def sent(proto: ServerProtocol) -> list[dict[str, Any]]:
    return [json.loads(b) for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]


def test_the_connect_carries_user_and_token_to_the_server() -> None:
    event = connect(ServerProtocol(), {"protocol": 2, "user": "alice", "token": "s3cret"})
    assert isinstance(event, ConnectRequested)
    assert (event.user, event.token, event.app_id) == ("alice", "s3cret", "shop")
    assert "s3cret" not in repr(event) and "alice" in repr(event)
    none = connect(ServerProtocol(), {"protocol": 2})
    assert (none.user, none.token) == (None, None)


def test_the_client_sends_its_user_beside_its_token() -> None:
    msg = connect_request("shop", "c1", client="t", token="s3cret", user="alice")
    assert msg.payload["user"] == "alice" and msg.payload["token"] == "s3cret"
    assert "user" not in connect_request("shop", "c1", client="t").payload
    assert "user" not in connect_request("shop", "c1", client="t", user="alice", protocol=None).payload  # version 1 has none


@pytest.mark.parametrize("user", ["", 7, ["alice"]])
def test_a_user_that_is_not_a_name_is_a_bad_connect(user: Any) -> None:
    event = connect(ServerProtocol(), {"protocol": 2, "user": user})
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message"


def test_a_pending_connect_waits_for_the_server_then_is_refused() -> None:
    proto = ServerProtocol()
    event = connect(proto, {"protocol": 2, "user": "alice", "token": "x"})
    assert proto.state is ProtocolState.HANDSHAKE and not sent(proto)  # the server takes its time
    violation = proto.refuse_connect("unauthorized", "invalid user or token")
    assert violation.code == "unauthorized" and proto.state is ProtocolState.ERROR
    [answer] = sent(proto)
    assert answer["reply_to"] == event.message.message_id
    assert answer["error"] == {"code": "unauthorized", "message": "invalid user or token"}
    with pytest.raises(ProtocolStateError):
        proto.refuse_connect("unauthorized", "again")


def test_a_version_1_connect_is_refused_in_its_own_version() -> None:
    proto = ServerProtocol()
    connect(proto, {"connection_id": "legacy"})
    proto.refuse_connect("unauthorized", "credentials required")
    [answer] = sent(proto)
    assert "error" not in answer  # 1.1.x has no error field: it travels in the payload (§10)
    assert answer["payload"] == {"error": {"code": "unauthorized", "message": "credentials required"}}


def test_a_frame_sent_while_the_connect_is_pending_is_a_violation() -> None:
    proto = ServerProtocol()
    connect(proto, {"protocol": 2, "user": "alice", "token": "x"})
    early = Message.build(MessageType.PUBLISH, "shop", "news", 1)
    [body] = proto.receive_data(encode_frame(encode_message(early)))
    event = proto.receive_frame(body)
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message"


@pytest.mark.parametrize("ending", ["token", "timeout", "early frame"])
def test_every_answer_to_a_version_1_connect_is_a_version_1_frame(ending: str) -> None:
    """Once the connect shows version 1 (no ``protocol``), a refusal has the
    seven version-1 fields, the error in the payload (§10): 1.1.x drops a
    frame with any other field, and would never learn why it was refused."""
    proto = ServerProtocol(token="s3cret" if ending == "token" else None)
    event = connect(proto, {"connection_id": "legacy"})
    if ending == "timeout":  # the server's handshake deadline, while it decides
        proto.fail("timeout", "no valid connect in time")
    elif ending == "early frame":
        early = Message.build(MessageType.PUBLISH, "shop", "news", 1)
        [body] = proto.receive_data(encode_frame(encode_message(early, legacy=True)))
        proto.receive_frame(body)
    assert proto.state is ProtocolState.ERROR
    [answer] = sent(proto)
    assert set(answer) == {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"}
    assert answer["message_type"] == "response" and answer["channel_id"] == "system"
    assert set(answer["payload"]) == {"error"} and set(answer["payload"]["error"]) == {"code", "message"}
    expected = {"token": "unauthorized", "timeout": "timeout", "early frame": "bad_message"}[ending]
    assert answer["payload"]["error"]["code"] == expected, answer
    if ending == "token":
        assert isinstance(event, ProtocolViolation) and answer["reply_to"] == event.message.message_id
