"""Streams and cancellation in the sans-I/O core, on bytes alone
(docs/protocol.md §15): the features of the handshake, the rules of the
frames on each side, the frames' encoding and the credit counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipc_protocol import ErrorCode, FrameDecoder, Message, MessageType, decode_message, encode_frame, encode_message
from ipc_protocol.client_protocol import ClientProtocol, Connected
from ipc_protocol.protocol import MessageRefused, ProtocolState, ProtocolViolation
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol
from ipc_protocol.streams import (
    DEFAULT_WINDOW,
    FEATURES,
    MAX_WINDOW,
    Credit,
    Window,
    cancel,
    cancel_reason,
    credit,
    flow_problem,
    negotiate,
    stream_end,
    stream_item,
)


def bodies(proto: Any) -> list[dict[str, Any]]:
    return [json.loads(b) for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]


def connect(payload_extra: dict[str, Any]) -> tuple[ServerProtocol, Any]:
    proto = ServerProtocol(server_name="ipc-bridge/test")
    payload = {"action": "connect", "connection_id": "w", "protocol": 2, "client": "t", **payload_extra}
    msg = Message.build(MessageType.REQUEST, "app", "system", payload, message_id="hello")
    (body,) = proto.receive_data(encode_frame(encode_message(msg)))
    return proto, proto.receive_frame(body)


def opened(features: list[str] | None) -> ServerProtocol:
    proto, event = connect({} if features is None else {"features": features})
    assert isinstance(event, ConnectRequested)
    proto.accept("w")
    proto.data_to_send()
    return proto


def feed(proto: Any, msg: Message) -> Any:
    (body,) = proto.receive_data(encode_frame(encode_message(msg)))
    return proto.receive_frame(body)


def frame(mtype: MessageType, **fields: Any) -> Message:
    return Message.build(mtype, "app", "ticks", fields.pop("payload", None), message_id="f1", **fields)


# -- the handshake (§15.1) -------------------------------------------------------


def test_negotiate_keeps_the_servers_order_and_needs_cancel_for_streams() -> None:
    assert negotiate(["streams", "cancel", "compression"]) == ["cancel", "streams"]
    assert negotiate(["streams"]) == []
    assert negotiate(["cancel"]) == ["cancel"]
    assert negotiate([]) == []
    assert FEATURES == ("cancel", "streams", "binary", "lame_duck", "goaway")


def test_a_connect_without_features_gets_the_reply_of_section_3() -> None:
    proto = opened(None)
    assert proto.features == frozenset()


def test_a_connect_with_features_gets_them_named_in_the_reply() -> None:
    proto, event = connect({"features": ["streams", "cancel", "later"]})
    assert event.features == ["streams", "cancel", "later"]
    proto.accept("w")
    (reply,) = bodies(proto)
    assert list(reply["payload"]) == ["status", "connection_id", "protocol", "server", "heartbeat_interval_ms", "max_frame_size", "features"]
    assert reply["payload"]["features"] == ["cancel", "streams"]
    assert proto.features == frozenset({"cancel", "streams"})


@pytest.mark.parametrize("features", ["streams", [1], {"streams": True}, [None]])
def test_features_that_are_not_a_list_of_strings_fail_the_connect(features: Any) -> None:
    proto, event = connect({"features": features})
    assert isinstance(event, ProtocolViolation) and event.code == ErrorCode.BAD_MESSAGE
    assert proto.state is ProtocolState.ERROR
    (error,) = bodies(proto)
    assert error["error"]["code"] == "bad_message" and "features" in error["error"]["message"]


def test_a_version_1_connect_never_negotiates() -> None:
    proto = ServerProtocol()
    msg = Message.build(MessageType.REQUEST, "app", "system", {"action": "connect", "connection_id": "w", "features": ["cancel"]}, message_id="h")
    (body,) = proto.receive_data(encode_frame(encode_message(msg)))
    event = proto.receive_frame(body)
    assert event.legacy and event.features is None
    proto.accept("w")
    assert "features" not in bodies(proto)[0]["payload"]


def client_open(offered: tuple[str, ...] | None, granted: Any) -> ClientProtocol:
    proto = ClientProtocol("app", "w", client="t", features=offered)
    hello_id = proto.connect()
    sent = bodies(proto)[0]
    assert ("features" in sent["payload"]) is (offered is not None)
    payload: dict[str, Any] = {"status": "connected", "connection_id": "w", "protocol": 2, "max_frame_size": 1024}
    if granted is not None:
        payload["features"] = granted
    reply = Message.build(MessageType.RESPONSE, "app", "system", payload, reply_to=hello_id)
    assert isinstance(feed(proto, reply), Connected)
    return proto


def test_the_client_asks_and_keeps_what_was_granted() -> None:
    assert client_open(FEATURES, ["cancel", "streams"]).features == frozenset({"cancel", "streams"})
    assert client_open(FEATURES, ["cancel"]).features == frozenset({"cancel"})
    assert client_open(FEATURES, None).features == frozenset()  # a server older than §15
    assert client_open(FEATURES, ["streams", "other"]).features == frozenset()  # streams only with cancel
    assert client_open(None, ["cancel", "streams"]).features == frozenset()  # never asked: never taken


# -- the rules of the frames ---------------------------------------------------------


@pytest.mark.parametrize(
    "msg, features, problem",
    [
        (frame(MessageType.REQUEST), frozenset(), None),
        (frame(MessageType.REQUEST, window=8), frozenset(), "streams were not negotiated"),
        (frame(MessageType.REQUEST, window=8), frozenset(FEATURES), None),
        (frame(MessageType.NOTIFICATION, window=8), frozenset(FEATURES), "notification cannot open a stream"),
        (frame(MessageType.STREAM_ITEM, reply_to="s"), frozenset({"cancel"}), "streams were not negotiated"),
        (frame(MessageType.STREAM_ITEM, reply_to="s"), frozenset(FEATURES), None),
        (frame(MessageType.STREAM_ITEM), frozenset(FEATURES), "without reply_to"),
        (frame(MessageType.STREAM_END, reply_to="s"), frozenset(FEATURES), None),
        (frame(MessageType.CREDIT, reply_to="s"), frozenset(FEATURES), "credit without window"),
        (frame(MessageType.CREDIT, reply_to="s", window=4), frozenset(FEATURES), None),
        (frame(MessageType.CANCEL, reply_to="s"), frozenset(), "cancel was not negotiated"),
        (frame(MessageType.CANCEL, reply_to="s"), frozenset({"cancel"}), None),
        (frame(MessageType.CANCEL), frozenset({"cancel"}), "without reply_to"),
        (frame(MessageType.PUBLISH), frozenset(), None),
    ],
)
def test_flow_problem(msg: Message, features: frozenset[str], problem: str | None) -> None:
    found = flow_problem(msg, features)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_the_server_refuses_a_frame_it_did_not_grant_and_stays_open() -> None:
    proto = opened(None)
    event = feed(proto, frame(MessageType.CANCEL, reply_to="q1"))
    assert isinstance(event, MessageRefused) and event.code == ErrorCode.BAD_MESSAGE
    assert proto.state is ProtocolState.OPEN
    (error,) = bodies(proto)
    assert error["reply_to"] == "f1" and error["error"]["code"] == "bad_message"
    stream_request = feed(proto, frame(MessageType.REQUEST, window=4))
    assert isinstance(stream_request, MessageRefused)


def test_the_server_routes_what_it_granted() -> None:
    proto = opened(["cancel", "streams"])
    for msg in (frame(MessageType.REQUEST, window=4), frame(MessageType.CREDIT, reply_to="s", window=2), frame(MessageType.CANCEL, reply_to="s")):
        assert type(feed(proto, msg)) is Message
    # On the system channel too: a cancel of a system action served by a responder.
    assert type(feed(proto, Message.build(MessageType.CANCEL, "app", "system", None, reply_to="s"))) is Message


def test_a_client_takes_an_ungranted_frame_for_a_violation() -> None:
    proto = client_open(FEATURES, None)
    event = feed(proto, frame(MessageType.STREAM_ITEM, reply_to="s"))
    assert isinstance(event, ProtocolViolation) and proto.state is ProtocolState.ERROR
    granted = client_open(FEATURES, ["cancel", "streams"])
    assert type(feed(granted, frame(MessageType.STREAM_ITEM, reply_to="s", payload=1))) is Message


# -- the frames ------------------------------------------------------------------------


def test_the_frames_answer_their_request() -> None:
    request = Message.build(MessageType.REQUEST, "app", "ticks", None, message_id="q1", window=8)
    item, end = stream_item(request, {"n": 1}), stream_end(request)
    assert (item.message_type, item.reply_to, item.payload, item.channel_id) == (MessageType.STREAM_ITEM, "q1", {"n": 1}, "ticks")
    assert (end.message_type, end.reply_to, end.payload) == (MessageType.STREAM_END, "q1", None)
    grant = credit("app", "ticks", "q1", 5)
    assert (grant.message_type, grant.window, grant.reply_to) == (MessageType.CREDIT, 5, "q1")
    stop = cancel("app", "ticks", "q1", ErrorCode.TIMEOUT)
    assert cancel_reason(stop) == "timeout" and stop.reply_to == "q1"
    assert cancel_reason(frame(MessageType.CANCEL, reply_to="q1")) == "cancelled"
    wire = json.loads(encode_message(grant))
    assert list(wire)[-2:] == ["reply_to", "window"]
    again = decode_message(encode_message(request.model_copy(update={"idle_timeout_ms": 1500.0, "timeout_ms": 3000.0})))
    assert (again.window, again.idle_timeout_ms) == (8, 1500)
    assert encode_message(again).endswith(b'"timeout_ms":3000,"window":8,"idle_timeout_ms":1500}')


def test_a_version_1_peer_never_sees_the_new_fields() -> None:
    request = Message.build(MessageType.REQUEST, "app", "ticks", None, window=8, idle_timeout_ms=10.0)
    assert set(json.loads(encode_message(request, legacy=True))) == {"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"}


# -- the counts ---------------------------------------------------------------------------


def test_credit_is_spent_by_items_and_capped() -> None:
    c = Credit(2)
    assert c.take() and c.take() and not c.take()
    assert c.grant(3) and c.available == 3
    assert not c.grant(MAX_WINDOW) and c.available == 3
    assert c.grant(MAX_WINDOW - 3) and c.available == MAX_WINDOW


def test_a_window_grants_half_at_a_time_and_never_more_than_its_size() -> None:
    w = Window(8)
    grants = [w.taken() for _ in range(16)]
    assert grants == [0, 0, 0, 4, 0, 0, 0, 4] * 2
    one = Window(1)
    assert [one.taken() for _ in range(3)] == [1, 1, 1]
    # Outstanding = granted - taken, never above the size, whatever the pace.
    w, outstanding = Window(5), 5
    for _ in range(100):
        outstanding -= 1
        outstanding += w.taken()
        assert 0 <= outstanding <= 5
    assert Window().size == DEFAULT_WINDOW


@pytest.mark.parametrize("size", [0, -1, MAX_WINDOW + 1, 1.5, True, "8"])
def test_a_window_is_a_whole_number_of_items(size: Any) -> None:
    with pytest.raises(ValueError):
        Window(size)
