"""The server's side of a connection on bytes alone: the handshake vectors
of interop-tests/spec/handshake.json, the connect's rules, what is read
after the handshake (docs/protocol.md §3, §6.4, §10)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol import FrameDecoder, Message, MessageType, decode_message, encode_frame, encode_message
from ipc_protocol.constants import HANDSHAKE_MAX_FRAME_SIZE, MAX_CONNECT_ID_LENGTH
from ipc_protocol.framing import ASSEMBLE_FROM_BYTES
from ipc_protocol.messages import connect_request
from ipc_protocol.protocol import MessageRefused, PingReceived, ProtocolState, ProtocolViolation
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol

SPEC = json.loads((Path(__file__).resolve().parent.parent / "interop-tests" / "spec" / "handshake.json").read_text())
_NORMALISE = {name: re.compile(rx) for name, rx in SPEC["normalise"].items()}
_REPLACEMENT = {"message_id": '"message_id":"*"', "timestamp": '"timestamp":0', "client": '"client":"*"'}


def normalise(body: str) -> str:
    for name, rx in _NORMALISE.items():
        body = rx.sub(_REPLACEMENT[name], body)
    return body


def server_for(token: str | None, users: bool = False) -> ServerProtocol:
    s = SPEC["server"]
    return ServerProtocol(
        max_frame_size=s["max_frame_size"],
        token=token,
        users=users,
        heartbeat_interval_s=s["heartbeat_interval_ms"] / 1000,
        server_name=s["server_name"],
    )


def bodies(proto: ServerProtocol) -> list[bytes]:
    return [b for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]


@pytest.mark.parametrize("vector", SPEC["vectors"], ids=[v["name"] for v in SPEC["vectors"]])
@pytest.mark.parametrize("chunk", [None, 1], ids=["whole", "byte-by-byte"])
def test_handshake_vectors(vector: dict[str, Any], chunk: int | None) -> None:
    proto = server_for(vector["token"], vector.get("users", False))
    for step in vector["steps"]:
        data = encode_frame(step["client_sends"].encode())
        pieces = [data] if chunk is None else [data[i : i + 1] for i in range(len(data))]
        for piece in pieces:
            for body in proto.receive_data(piece, 0.0):
                if isinstance(proto.receive_frame(body), ConnectRequested):
                    proto.accept(vector["accept_as"], now=0.0)
        assert [normalise(b.decode()) for b in bodies(proto)] == step["server_replies"]
        assert proto.state.value == step["state"]


def test_the_vectors_connect_is_what_our_client_encodes() -> None:
    """The Python encoder of a connect writes the vectors' bytes."""
    hello = connect_request("shop", "worker-1", client="example/1.0")
    expected = SPEC["vectors"][0]["steps"][0]["client_sends"]
    assert normalise(encode_message(hello).decode()) == normalise(expected)
    legacy = connect_request("shop", "worker-1", client="example/1.0", protocol=None)
    assert normalise(encode_message(legacy).decode()) == normalise(SPEC["vectors"][2]["steps"][0]["client_sends"])


def _connect(proto: ServerProtocol, payload: dict[str, Any], app_id: str = "app") -> Any:
    msg = Message.build(MessageType.REQUEST, app_id, "system", payload, message_id="hello")
    (body,) = proto.receive_data(encode_frame(encode_message(msg)))
    return proto.receive_frame(body)


def test_connect_requested_carries_what_the_server_decides_on() -> None:
    event = _connect(ServerProtocol(), {"action": "connect", "connection_id": "w", "protocol": 3, "client": "py"})
    assert isinstance(event, ConnectRequested)
    assert (event.app_id, event.connection_id, event.legacy, event.client) == ("app", "w", False, "py")
    assert event.message.message_id == "hello"
    bare = _connect(ServerProtocol(), {"action": "connect", "connection_id": 5, "client": 7})
    assert (bare.connection_id, bare.legacy, bare.client) == ("", True, "")


def test_nothing_is_sent_until_the_server_accepts() -> None:
    proto = ServerProtocol()
    _connect(proto, {"action": "connect", "protocol": 2})
    assert proto.state is ProtocolState.HANDSHAKE and proto.data_to_send() == []
    proto.accept("conn-1")
    assert proto.state is ProtocolState.OPEN and proto.connection_id == "conn-1" and proto.app_id == "app"


def test_a_length_prefix_reserves_nothing_before_the_handshake() -> None:
    """An unauthenticated socket makes the server hold what it sent, not
    what a prefix announces; once open, a large frame gets its own buffer
    (read in place), which grows with what comes."""
    shared = memoryview(bytearray(4096))
    announce = (HANDSHAKE_MAX_FRAME_SIZE).to_bytes(4, "big") + b'{"x'
    waiting = ServerProtocol()
    assert waiting.receive_data(announce) == []
    assert waiting.read_buffer(shared) is shared and waiting._decoder.buffered == 7
    opened = ServerProtocol()
    _connect(opened, {"action": "connect", "protocol": 2})
    opened.accept("conn-1")
    assert opened.receive_data((16 * 1024 * 1024).to_bytes(4, "big") + b'{"x') == []
    view = opened.read_buffer(shared)
    assert view is not shared and len(view) == ASSEMBLE_FROM_BYTES - 3


@pytest.mark.parametrize("chunk", [None, 1], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("token", [None, "s3cret"])
def test_a_frame_over_the_handshake_limit_is_refused_on_its_prefix(chunk: int | None, token: str | None) -> None:
    """§3 item 11: before the connect is accepted a frame may be at most
    64 KiB; a larger one is ``too_large`` from its 4 prefix bytes, nothing
    of its body held, and the connection fails."""
    proto = ServerProtocol(token=token)
    data = (HANDSHAKE_MAX_FRAME_SIZE + 1).to_bytes(4, "big") + b'{"action":"connect"'
    pieces = [data] if chunk is None else [data[i : i + 1] for i in range(len(data))]
    for piece in pieces:
        assert proto.receive_data(piece) == []
        if proto.state is ProtocolState.ERROR:
            break
    assert proto.state is ProtocolState.ERROR and proto.violation is not None and proto.violation.code == "too_large"
    assert proto._decoder.buffered <= 4
    (err,) = [decode_message(b) for b in bodies(proto)]
    assert err.error is not None and err.error.code == "too_large" and err.reply_to is None
    assert str(HANDSHAKE_MAX_FRAME_SIZE) in err.error.message


def test_a_connect_at_the_handshake_limit_opens_and_the_full_limit_applies_after() -> None:
    """The largest legitimate connect (a long token, the longest ids) fits
    with room to spare; the reply advertises the server's own limit, which
    holds from then on."""
    long_ids = "i" * MAX_CONNECT_ID_LENGTH
    hello = connect_request(long_ids, long_ids, client=long_ids, token="t" * 8192, user=long_ids)
    assert len(encode_message(hello)) < HANDSHAKE_MAX_FRAME_SIZE // 4
    proto = ServerProtocol()
    padded = encode_message(hello)[:-1] + b" " * (HANDSHAKE_MAX_FRAME_SIZE - len(encode_message(hello))) + b"}"
    assert len(padded) == HANDSHAKE_MAX_FRAME_SIZE
    (body,) = proto.receive_data(encode_frame(padded))
    assert isinstance(proto.receive_frame(body), ConnectRequested)
    proto.accept("c1")
    (reply,) = [decode_message(b) for b in bodies(proto)]
    assert reply.payload["max_frame_size"] == 16 * 1024 * 1024 == proto.max_frame_size
    big = encode_message(Message.build(MessageType.PUBLISH, long_ids, "news", "x" * (1024 * 1024)))
    assert proto.receive_data(encode_frame(big)) == [big]


def test_a_frame_after_a_pending_connect_is_held_to_the_handshake_limit() -> None:
    """While the server checks a user's token (off the loop), the socket has
    still proved nothing: a large frame behind the connect is refused on its prefix."""
    proto = ServerProtocol()
    _connect(proto, {"action": "connect", "protocol": 2, "user": "u", "token": "t"})
    assert proto.receive_data((16 * 1024 * 1024).to_bytes(4, "big") + b"{") == []
    assert proto.violation is not None and proto.violation.code == "too_large"


def test_the_handshake_limit_is_never_above_the_servers_own() -> None:
    proto = ServerProtocol(max_frame_size=1024)
    assert proto.receive_data((1025).to_bytes(4, "big")) == []
    assert proto.violation is not None and proto.violation.code == "too_large"


def test_open_connections_share_their_app_s_and_client_s_names_and_the_empty_feature_set() -> None:
    """What thousands of idle connections hold once each (docs/performance.md, "Memory")."""
    opened = []
    for i in range(2):
        proto = ServerProtocol()
        _connect(proto, {"action": "connect", "protocol": 2, "client": "ipc-bridge-py/2"}, app_id="shop")  # each decoded from its own frame
        proto.accept(f"conn-{i}")
        opened.append(proto)
    first, second = opened
    assert first.app_id is second.app_id and first.app_id == "shop"
    assert first.client is second.client and first.client == "ipc-bridge-py/2"
    assert first.features is second.features and first.features == frozenset()


@pytest.mark.parametrize(("protocol", "limit"), [(2.0, 4096.0), (3, 4.096e3)])
def test_integral_floats_in_the_connect_count_as_their_integers(protocol: float, limit: float) -> None:
    """A JavaScript peer cannot tell 2.0 from 2 (docs/protocol.md §1.2)."""
    event = _connect(ServerProtocol(), {"action": "connect", "protocol": protocol, "max_frame_size": limit})
    assert isinstance(event, ConnectRequested) and not event.legacy


@pytest.mark.parametrize("limit", [True, 4096.5, "4096", 0.0])
def test_a_declared_limit_that_is_no_positive_integer_is_refused(limit: Any) -> None:
    event = _connect(ServerProtocol(), {"action": "connect", "protocol": 2, "max_frame_size": limit})
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message"


@pytest.mark.parametrize("protocol", [True, 1.5, "2", [2], 0, -2, 1.0])
def test_a_protocol_that_is_not_an_integer_of_2_or_more_is_refused(protocol: Any) -> None:
    event = _connect(ServerProtocol(), {"action": "connect", "protocol": protocol})
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message"


@pytest.mark.parametrize(
    "msg",
    [
        Message.build(MessageType.NOTIFICATION, "app", "system", {"action": "connect"}),
        Message.build(MessageType.REQUEST, "app", "other", {"action": "connect"}),
        Message.build(MessageType.REQUEST, "app", "system", {"action": "ping"}),
        Message.build(MessageType.REQUEST, "app", "system", ["connect"]),
    ],
    ids=["notification", "other-channel", "ping", "not-an-object"],
)
def test_only_a_connect_request_on_system_opens(msg: Message) -> None:
    proto = ServerProtocol()
    (body,) = proto.receive_data(encode_frame(encode_message(msg)))
    event = proto.receive_frame(body)
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message" and event.message == msg
    assert proto.state is ProtocolState.ERROR
    (err,) = [decode_message(b) for b in bodies(proto)]
    assert err.reply_to == msg.message_id and err.app_id == ""


def test_a_bad_envelope_before_the_handshake_is_answered_with_its_id() -> None:
    proto = ServerProtocol()
    (body,) = proto.receive_data(encode_frame(b'{"message_id":"m1","app_id":"app","channel_id":"system","message_type":"yell"}'))
    event = proto.receive_frame(body)
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message" and event.message is None
    (err,) = [decode_message(b) for b in bodies(proto)]
    assert err.reply_to == "m1"


def test_token_compared_as_a_string_only() -> None:
    for offered in (None, 123, ["s3cret"], "s3cre", "s3cret!"):
        payload: dict[str, Any] = {"action": "connect", "protocol": 2}
        if offered is not None:
            payload["token"] = offered
        event = _connect(ServerProtocol(token="s3cret"), payload)
        assert isinstance(event, ProtocolViolation) and event.code == "unauthorized", offered
    assert isinstance(_connect(ServerProtocol(token="s3cret"), {"action": "connect", "protocol": 2, "token": "s3cret"}), ConnectRequested)


def test_frames_after_the_connect_in_the_same_read_follow_its_reply() -> None:
    proto = ServerProtocol()
    hello = connect_request("app", "c1", client="t")
    work = Message.build(MessageType.PUBLISH, "app", "news", 1)
    ping = Message.build(MessageType.REQUEST, "app", "system", {"action": "ping"})
    frames = proto.receive_data(b"".join(encode_frame(encode_message(m)) for m in (hello, work, ping)))
    items = []
    for body in frames:
        items.append(proto.receive_frame(body))
        if isinstance(items[-1], ConnectRequested):
            proto.accept("c1")
    assert items[1] == work
    replies = [decode_message(b) for b in bodies(proto)]
    assert [r.reply_to for r in replies] == [hello.message_id, ping.message_id]


def test_a_second_frame_before_the_server_accepts_is_refused() -> None:
    proto = ServerProtocol()
    _connect(proto, {"action": "connect", "protocol": 2})
    (body,) = proto.receive_data(encode_frame(encode_message(connect_request("app", "c", client="t"))))
    assert isinstance(proto.receive_frame(body), ProtocolViolation)


_VALID = [
    encode_frame(encode_message(connect_request("app", "c1", client="t"))),
    encode_frame(encode_message(Message.build(MessageType.PUBLISH, "app", "news", 1))),
    encode_frame(encode_message(Message.build(MessageType.REQUEST, "app", "system", {"action": "ping"}))),
    encode_frame(encode_message(Message.build(MessageType.PUBLISH, "other", "news", 1))),
    encode_frame(b"[1]"),
    encode_frame(b'{"message_id":"m","app_id":"app"}'),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(_VALID), st.binary(max_size=40)), max_size=8),
    st.integers(min_value=1, max_value=64),
)
def test_any_input_is_read_or_refused_never_raised(pieces: list[bytes], chunk: int) -> None:
    """h11's invariant: whatever arrives, the core returns messages and
    events, and a violation leaves exactly one error frame and ``error``."""
    proto = ServerProtocol(max_frame_size=1024)
    data = b"".join(pieces)
    for i in range(0, len(data), chunk):
        for body in proto.receive_data(data[i : i + chunk], 0.0):
            if proto.state not in (ProtocolState.HANDSHAKE, ProtocolState.OPEN):
                break
            item = proto.receive_frame(body)
            assert type(item) is Message or isinstance(item, (ConnectRequested, ProtocolViolation, PingReceived, MessageRefused))
            if isinstance(item, ConnectRequested):
                proto.accept("c1", now=0.0)
    sent = [decode_message(b) for b in bodies(proto)]
    if proto.state is ProtocolState.ERROR:
        assert proto.violation is not None
        assert sent[-1].error is not None and sent[-1].error.code == proto.violation.code  # the last frame
    else:
        assert proto.state in (ProtocolState.HANDSHAKE, ProtocolState.OPEN) and proto.violation is None
