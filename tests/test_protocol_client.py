"""The client's side of a connection on bytes alone: the connect it sends,
the replies of interop-tests/spec/handshake.json (accepted and refused), a
1.1.x server's reply, the frame limit, heartbeats and server pings
(docs/protocol.md §1, §3, §9, §10)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ipc_protocol import FrameDecoder, Message, MessageType, encode_frame
from ipc_protocol.client_protocol import ClientProtocol, Connected, HandshakeRefused
from ipc_protocol.constants import DEFAULT_MAX_FRAME_SIZE
from ipc_protocol.exceptions import FrameError, FrameTooLarge, MessageError, NotConnected, RemoteError, Unauthorized
from ipc_protocol.heartbeat import HeartbeatAction
from ipc_protocol.protocol import PingReceived, PongReceived, ProtocolState, ProtocolViolation

SPEC = json.loads((Path(__file__).resolve().parent.parent / "interop-tests" / "spec" / "handshake.json").read_text())
_NORMALISE = {name: re.compile(rx) for name, rx in SPEC["normalise"].items()}
_REPLACEMENT = {"message_id": '"message_id":"*"', "timestamp": '"timestamp":0', "client": '"client":"*"'}
V1_FIELDS = {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"}


def normalise(body: str) -> str:
    for name, rx in _NORMALISE.items():
        body = rx.sub(_REPLACEMENT[name], body)
    return body


def vector(name: str) -> dict[str, Any]:
    return next(v for v in SPEC["vectors"] if v["name"] == name)


def sent(proto: ClientProtocol) -> list[dict[str, Any]]:
    return [json.loads(b) for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]


def feed(proto: ClientProtocol, body: str | bytes, now: float | None = None) -> list[Message | Any]:
    data = encode_frame(body.encode() if isinstance(body, str) else body)
    return [proto.receive_frame(frame) for frame in proto.receive_data(data, now)]


def reply(payload: Any, *, reply_to: str | None = "hello-1", error: dict[str, Any] | None = None) -> str:
    obj: dict[str, Any] = {"message_id": "r1", "app_id": "shop", "channel_id": "system", "message_type": "response",
                           "payload": payload, "timestamp": 0, "reply_to": reply_to}  # fmt: skip
    if error is not None:
        obj["error"] = error
    return json.dumps(obj)


def client(**kwargs: Any) -> ClientProtocol:
    return ClientProtocol("shop", "worker-1", client="example/1.0", **kwargs)


V2_ACCEPTED = vector("version 2 accepted")["steps"][0]["server_replies"][0]
V1_ACCEPTED = vector("version 1 (no protocol field): the reply has only the legacy fields")["steps"][0]["server_replies"][0]


# -- the connect ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "token"), [("version 2 accepted", None), ("version 2 with the right token, the server choosing another id", "s3cret")]
)
def test_connect_sends_the_vectors_connect(name: str, token: str | None) -> None:
    proto = client(token=token)
    proto.connect()
    (body,) = [b for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]
    assert normalise(body.decode()) == normalise(vector(name)["steps"][0]["client_sends"])
    assert proto.state is ProtocolState.HANDSHAKE


# -- the reply ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "byte-by-byte"])
def test_a_version_2_reply_opens_the_connection(chunked: bool) -> None:
    proto = client()
    proto.connect()
    proto.data_to_send()
    data = encode_frame(V2_ACCEPTED.replace('"*"', '"r1"').encode())
    pieces = [data[i : i + 1] for i in range(len(data))] if chunked else [data]
    events = [proto.receive_frame(f) for piece in pieces for f in proto.receive_data(piece)]
    (event,) = events
    assert isinstance(event, Connected)
    assert proto.state is ProtocolState.OPEN
    assert (event.legacy, event.connection_id, event.max_frame_size, event.heartbeat_interval_s) == (False, "worker-1", 16777216, 15.0)
    assert event.server_info["server"] == "ipc-bridge/2.0.0"


def test_the_server_may_give_another_connection_id() -> None:
    proto = client(token="s3cret")
    proto.connect()
    step = vector("version 2 with the right token, the server choosing another id")["steps"][0]
    (event,) = feed(proto, step["server_replies"][0].replace('"*"', '"r1"'))
    assert isinstance(event, Connected)
    assert event.connection_id == proto.connection_id == "worker-1-7"


def test_a_server_with_a_users_file_says_its_keys_are_per_user() -> None:
    """§3 item 2: ``"users": true``, recorded so a responder does not join
    or replay one user's keyed request for another (§6.6 item 10)."""
    users = vector("version 2 on a server with a users file (docs/protocol.md §3 item 2, §3.1): the reply says \"users\": true, idempotency keys are per user (§6.6 items 1, 10)")
    proto = client(user="alice", token="alice-token")
    proto.connect()
    assert normalise(sent_body(proto)) == normalise(users["steps"][0]["client_sends"])
    (event,) = feed(proto, users["steps"][0]["server_replies"][0].replace('"*"', '"r1"'))
    assert isinstance(event, Connected) and proto.keys_per_user is True
    plain = client()
    plain.connect()
    (event,) = feed(plain, V2_ACCEPTED.replace('"*"', '"r1"'))
    assert isinstance(event, Connected) and plain.keys_per_user is False


def sent_body(proto: ClientProtocol) -> str:
    (body,) = [b for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]
    return body.decode()


def test_a_reply_without_protocol_is_a_version_1_server_and_then_only_version_1_fields_go_out() -> None:
    proto = client()
    proto.connect()
    proto.data_to_send()
    (event,) = feed(proto, V1_ACCEPTED.replace('"*"', '"r1"'))
    assert isinstance(event, Connected) and event.legacy and proto.legacy
    assert event.heartbeat_interval_s is None and not proto.start_heartbeat(0.0)
    proto.send(Message.build(MessageType.PUBLISH, "shop", "news", 1, headers={"k": "v"}, ack=True))
    (out,) = sent(proto)
    assert set(out) == V1_FIELDS


def test_a_1_1_x_server_answers_the_connect_without_reply_to() -> None:
    proto = client()
    proto.connect()
    (event,) = feed(proto, reply({"status": "connected", "connection_id": "legacy-7"}, reply_to=None))
    assert isinstance(event, Connected)
    assert event.legacy and event.connection_id == "legacy-7"


@pytest.mark.parametrize(
    ("name", "error_type", "code"),
    [
        ("wrong token: unauthorized", Unauthorized, "unauthorized"),
        ("missing token: unauthorized", Unauthorized, "unauthorized"),
        ("protocol not an integer: bad_message", RemoteError, "bad_message"),
    ],
)
def test_a_refusal_is_reported_with_its_typed_error(name: str, error_type: type[Exception], code: str) -> None:
    proto = client()
    proto.connect()
    proto.data_to_send()
    (event,) = feed(proto, vector(name)["steps"][0]["server_replies"][0].replace('"*"', '"r1"'))
    assert isinstance(event, HandshakeRefused)
    assert isinstance(event.error, error_type) and str(event.error.code) == code
    assert proto.state is ProtocolState.ERROR
    assert proto.data_to_send() == []  # nothing is sent back
    assert proto.receive_data(encode_frame(V2_ACCEPTED.encode())) == []  # and nothing more is read


def test_a_reply_that_is_not_connected_is_refused() -> None:
    proto = client()
    proto.connect()
    (event,) = feed(proto, reply({"status": "busy"}))
    assert isinstance(event, HandshakeRefused) and isinstance(event.error, NotConnected)


def test_what_is_not_a_response_before_the_reply_is_the_pump_s() -> None:
    proto = client()
    proto.connect()
    publish = json.dumps({"message_id": "p", "app_id": "shop", "channel_id": "news", "message_type": "publish",
                          "payload": 1, "timestamp": 0, "reply_to": None})  # fmt: skip
    (item,) = feed(proto, publish)
    assert isinstance(item, Message) and item.channel_id == "news"
    assert proto.state is ProtocolState.HANDSHAKE


# -- the frame limit --------------------------------------------------------------------


@pytest.mark.parametrize(("ours", "limit"), [(None, DEFAULT_MAX_FRAME_SIZE), (1024, DEFAULT_MAX_FRAME_SIZE), (2 * DEFAULT_MAX_FRAME_SIZE, 2 * DEFAULT_MAX_FRAME_SIZE)])
def test_before_the_reply_the_limit_is_ours_or_the_default(ours: int | None, limit: int) -> None:
    proto = client(max_frame_size=ours)
    proto.connect()
    assert proto.receive_data((limit + 1).to_bytes(4, "big")) == []
    assert isinstance(proto.violation, ProtocolViolation) and proto.state is ProtocolState.ERROR
    assert client(max_frame_size=ours).receive_data(limit.to_bytes(4, "big")) == []  # at the limit: waits for the body
    assert proto.max_frame_size == limit


@pytest.mark.parametrize(("ours", "advertised", "limit"), [(None, 4096, 4096), (1024, 4096, 1024), (8192, 4096, 4096)])
def test_a_version_2_reply_negotiates_the_smaller_limit(ours: int | None, advertised: int, limit: int) -> None:
    """A server that negotiates (features in its reply) honours ours (§12.3): the smaller limit, both ways."""
    proto = client(max_frame_size=ours, features=())
    proto.connect()
    (event,) = feed(proto, reply({"status": "connected", "connection_id": "c", "protocol": 2, "max_frame_size": advertised, "features": []}))
    assert event.max_frame_size == proto.max_frame_size == proto.send_limit == limit and event.negotiates


@pytest.mark.parametrize("written", ["4096", "4096.0", "4.096e3"])
def test_an_advertised_limit_written_as_an_integral_float_is_applied(written: str) -> None:
    """JSON.parse cannot tell 4096.0 from 4096, so the Node client applies
    either (Number.isInteger): so does this one, instead of ignoring it."""
    proto = client()
    proto.connect()
    body = reply({"status": "connected", "connection_id": "c", "protocol": 2, "max_frame_size": "@"}).replace('"@"', written)
    (event,) = feed(proto, body)
    assert event.max_frame_size == proto.max_frame_size == 4096 and type(proto.max_frame_size) is int


@pytest.mark.parametrize("written", ["4096.5", "true", '"4096"', "0", "-4096.0"])
def test_an_advertised_limit_that_is_no_positive_integer_is_ignored(written: str) -> None:
    proto = client()
    proto.connect()
    body = reply({"status": "connected", "connection_id": "c", "protocol": 2, "max_frame_size": "@"}).replace('"@"', written)
    (event,) = feed(proto, body)
    assert event.max_frame_size == proto.max_frame_size == DEFAULT_MAX_FRAME_SIZE


def test_a_version_1_server_keeps_our_limit_for_good() -> None:
    proto = client()
    proto.connect()
    (event,) = feed(proto, reply({"status": "connected", "connection_id": "c", "max_frame_size": 4096}))
    assert event.legacy and proto.max_frame_size == DEFAULT_MAX_FRAME_SIZE


# -- once open: heartbeats and server pings ------------------------------------------------


def open_v2(**kwargs: Any) -> ClientProtocol:
    proto = client(**kwargs)
    proto.connect()
    feed(proto, V2_ACCEPTED.replace('"*"', '"r1"'))
    proto.data_to_send()
    return proto


def test_our_heartbeat_pings_on_silence_and_the_pong_reports_the_latency() -> None:
    proto = open_v2()
    assert proto.start_heartbeat(100.0)  # the server's advertised 15 s
    assert proto.tick(110.0) is HeartbeatAction.NONE
    assert proto.tick(115.0) is HeartbeatAction.PING
    (ping,) = sent(proto)
    assert ping["channel_id"] == "system" and ping["payload"] == {"action": "ping"}
    (event,) = feed(proto, reply({"status": "pong"}, reply_to=ping["message_id"]), now=115.25)
    assert isinstance(event, PongReceived) and event.latency_s == pytest.approx(0.25)
    assert proto.tick(130.0) is HeartbeatAction.NONE  # the pong proved the server alive at 115.25
    assert proto.tick(145.3) is HeartbeatAction.DEAD  # twice the interval of silence


@pytest.mark.parametrize(
    ("written", "interval_s", "kept_s"),
    [("15000", 15.0, 15.0), ("15000.0", 15.0, 15.0), ("1.5e4", 15.0, 15.0), ("2000", 2.0, 2.0), ("true", None, 15.0), ("false", None, 15.0),
     ('"2000"', None, 15.0), ("-5", None, 15.0), ("0", None, None)],
)  # fmt: skip
def test_the_advertised_heartbeat_is_a_number_as_javascript_reads_it(written: str, interval_s: float | None, kept_s: float | None) -> None:
    """``true`` is no number to the Node client, which ignores it; Python's
    bool is an int, which made it a 1 ms heartbeat, the connection declared
    dead after 2 ms of silence. Ignored, as a missing one, it is the default
    15 s (docs/protocol.md §9 item 6); only 0 turns the heartbeat off."""
    proto = client()
    proto.connect()
    body = reply({"status": "connected", "connection_id": "c", "protocol": 2, "heartbeat_interval_ms": "@"}).replace('"@"', written)
    (event,) = feed(proto, body)
    assert event.heartbeat_interval_s == interval_s
    assert proto.start_heartbeat(0.0) is (kept_s is not None)
    assert proto.heartbeat is None if kept_s is None else proto.heartbeat.interval_s == kept_s


def test_a_version_2_reply_without_a_heartbeat_interval_keeps_the_default_15_s() -> None:
    """Before: no heartbeat at all (a half-open connection never noticed),
    where the Node client kept 15 s."""
    proto = client()
    proto.connect()
    (event,) = feed(proto, reply({"status": "connected", "connection_id": "c", "protocol": 2}))
    assert event.heartbeat_interval_s is None
    assert proto.start_heartbeat(0.0)
    assert proto.heartbeat is not None and (proto.heartbeat.interval_s, proto.heartbeat.timeout_s) == (15.0, 30.0)


def test_our_heartbeat_interval_and_timeout_win_over_the_server_s() -> None:
    proto = open_v2(heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0)
    assert proto.start_heartbeat(0.0)
    assert proto.heartbeat is not None and (proto.heartbeat.interval_s, proto.heartbeat.timeout_s) == (1.0, 5.0)


def test_a_server_ping_is_answered_here() -> None:
    proto = open_v2()
    ping = json.dumps({"message_id": "ping-1", "app_id": "shop", "channel_id": "system", "message_type": "request",
                       "payload": {"action": "ping"}, "timestamp": 0, "reply_to": None})  # fmt: skip
    (event,) = feed(proto, ping)
    assert isinstance(event, PingReceived)
    (pong,) = sent(proto)
    assert (pong["reply_to"], pong["payload"]) == ("ping-1", {"status": "pong"})


def test_messages_once_open_are_the_pump_s() -> None:
    proto = open_v2()
    answer = reply({"sum": 3}, reply_to="req-1")
    (item,) = feed(proto, answer)
    assert isinstance(item, Message) and item.reply_to == "req-1"


def test_a_bad_envelope_from_the_server_is_a_violation() -> None:
    proto = open_v2()
    (event,) = feed(proto, b"[1, 2]")
    assert isinstance(event, ProtocolViolation) and proto.state is ProtocolState.ERROR


def test_a_violation_carries_this_side_s_typed_error_not_a_remote_one() -> None:
    # The server sent no error frame: the client reports what it found (Node's violation.error alike).
    cases = [(b"[1, 2]", FrameError, "bad_frame"), (b'{"message_id": "m"}', MessageError, "bad_message")]
    for body, cls, code in cases:
        proto = open_v2()
        (event,) = feed(proto, body)
        assert isinstance(event, ProtocolViolation) and type(event.error) is cls and event.error.code == code
        assert proto.data_to_send() != []  # an error frame was queued, and the typed error kept beside it
    proto = client(max_frame_size=1024)  # before the reply: the larger of ours and the default (§12.3)
    proto.connect()
    assert proto.receive_data((DEFAULT_MAX_FRAME_SIZE + 1).to_bytes(4, "big")) == []
    assert proto.violation is not None and type(proto.violation.error) is FrameTooLarge
    assert proto.violation.error.size == DEFAULT_MAX_FRAME_SIZE + 1 and proto.violation.error.limit == DEFAULT_MAX_FRAME_SIZE


def _overflowing(reply_to: str) -> str:
    return reply({"big": "N"}, reply_to=reply_to).replace('"N"', "1e400")


def test_a_version_2_server_s_frames_are_not_screened_again_for_numbers_that_overflow() -> None:
    # It refused them on the way in and never encodes one (§1.1): decoded as a cluster node's relays are.
    # Only a server that negotiates (features in its reply): a 2.0.0 server's are screened (test_version_skew.py).
    proto = client(features=())
    proto.connect()
    accepted = json.loads(V2_ACCEPTED.replace('"*"', '"r1"'))
    accepted["payload"]["features"] = []
    feed(proto, json.dumps(accepted))
    assert proto.negotiates
    (item,) = feed(proto, _overflowing("req-1"))
    assert isinstance(item, Message) and item.payload == {"big": float("inf")}
    (event,) = feed(proto, reply({"n": "N"}, reply_to="req-2").replace('"N"', "NaN"))
    assert isinstance(event, ProtocolViolation)  # NaN is looked for still: no JSON at all


def test_a_1_1_x_server_s_frames_are_screened() -> None:
    proto = client()
    proto.connect()
    proto.data_to_send()
    feed(proto, V1_ACCEPTED.replace('"*"', '"r1"'))
    (event,) = feed(proto, _overflowing("req-1"))
    assert isinstance(event, ProtocolViolation) and "overflows a double" in event.text
