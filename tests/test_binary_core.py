"""Binary attachments in the sans-I/O core, on bytes alone (docs/protocol.md
§16): the walk that takes bytes out of a payload, the binary frame's
buffers and tagged form, the protocol's rules on each side, and a fuzz of
the attachment framing (a typed error, never a crash)."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipc_protocol import (
    ErrorCode,
    FrameDecoder,
    FrameError,
    Message,
    MessageError,
    MessageType,
    ProtocolError,
    decode_message,
    encode_frame,
    encode_message,
)
from ipc_protocol.attachments import MAX_ATTACHMENTS, BinaryBytes, BinaryFrame, as_binary, encode_body, split, strip, tagged_payload, with_bytes
from ipc_protocol.client_protocol import ClientProtocol, Connected
from ipc_protocol.envelope import encode_message_parts, encode_request, encode_request_parts, encode_response
from ipc_protocol.framing import frame_parts
from ipc_protocol.protocol import MessageRefused, ProtocolState, ProtocolViolation
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol
from ipc_protocol.streams import negotiate


def build(payload: Any, mtype: MessageType = MessageType.REQUEST, **fields: Any) -> Message:
    return Message.build(mtype, "app", "files", payload, message_id="m1", **fields)


def wire_bytes(frame: bytes | BinaryFrame) -> bytes:
    return bytes(frame)


# -- the walk (§16.3) -------------------------------------------------------------


def test_every_binary_type_anywhere_in_a_payload_is_taken_out_in_jsons_order() -> None:
    ro = memoryview(b"view")
    payload = {"a": b"bytes", "b": [1, bytearray(b"array"), {"c": ro}], "t": (b"tuple",), "s": "text"}
    stripped, paths, buffers = strip(payload)
    assert stripped == {"a": None, "b": [1, None, {"c": None}], "t": [None], "s": "text"}
    assert paths == [["a"], ["b", 1], ["b", 2, "c"], ["t", 0]]
    assert [bytes(b) for b in buffers] == [b"bytes", b"array", b"view", b"tuple"]
    assert payload["b"][1] == bytearray(b"array") and payload["t"] == (b"tuple",)  # the caller's payload is untouched
    assert buffers[2] is ro  # a read-only view goes as it is, uncopied


def test_a_payload_without_binary_is_not_copied() -> None:
    payload = {"a": [1, {"b": "x"}], "c": None}
    stripped, paths, buffers = strip(payload)
    assert stripped is payload and paths == [] and buffers == []


def test_the_payload_itself_may_be_the_attachment() -> None:
    assert strip(b"raw") == (None, [[]], [b"raw"])


def test_a_bytearray_is_taken_when_the_message_is_encoded() -> None:
    """Copied once, so the caller may reuse it at once (as JSON values are)."""
    data = bytearray(b"before")
    body = encode_message_parts(build({"d": data}))
    data[:] = b"AFTER!"
    assert decode_message(bytes(body)).payload == {"d": b"before"}


def test_views_of_other_shapes_go_as_their_bytes() -> None:
    ints = memoryview(struct.pack("<3i", 1, 2, 3)).cast("i")
    strided = memoryview(b"abcdef")[::2]
    msg = decode_message(bytes(encode_message_parts(build([ints, strided]))))
    assert msg.payload == [struct.pack("<3i", 1, 2, 3), b"ace"]


def test_binary_under_a_key_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(MessageError):
        encode_message(build({1: b"x"}))


def test_a_payload_without_binary_encodes_as_before_byte_for_byte() -> None:
    msg = build({"a": [1, "two", None]})
    assert encode_message_parts(msg) == encode_message(msg)
    assert encode_message(msg).startswith(b"{")


def test_binary_data_in_a_frame_that_cannot_carry_it_is_refused() -> None:
    with pytest.raises(MessageError, match="subscribe cannot carry"):
        encode_message(build({"x": b"1"}, MessageType.SUBSCRIBE))


def test_more_attachments_than_a_frame_holds_are_refused() -> None:
    with pytest.raises(MessageError, match="at most 65535"):
        encode_message(build([b""] * (MAX_ATTACHMENTS + 1)))
    assert len(decode_message(encode_message(build([b""] * MAX_ATTACHMENTS))).payload) == MAX_ATTACHMENTS


# -- the binary frame (§16.2) --------------------------------------------------------------


def test_a_built_frame_is_its_head_then_the_callers_buffers() -> None:
    data = b"x" * 1000
    body = encode_message_parts(build({"d": data, "e": b""}))
    assert isinstance(body, BinaryFrame) and body.count == 2 and not body.framed
    assert body.parts[1] is data  # never joined
    head = body.parts[0]
    j, n, l1, l2 = struct.unpack_from(">IIII", head, 1)
    assert head[0] == 0 and n == 2 and (l1, l2) == (1000, 0) and len(head) == 9 + 8 + j
    envelope = json.loads(head[17:])
    assert list(envelope)[-1] == "attachments" and envelope["attachments"] == [["d"], ["e"]]
    assert envelope["payload"] == {"d": None, "e": None}
    assert len(body) == len(head) + 1000 == len(bytes(body))
    frame = frame_parts(body)
    assert isinstance(frame, BinaryFrame) and frame.framed and frame.parts[1] is data
    assert bytes(frame) == len(body).to_bytes(4, "big") + bytes(body)


def test_a_binary_body_read_from_a_peer_is_framed_without_a_copy() -> None:
    body = bytes(encode_message_parts(build({"d": b"payload"})))
    frame = frame_parts(body)
    assert isinstance(frame, BinaryFrame) and frame.parts[1] is body and frame.count == 1
    joined = encode_frame(body)  # one buffer, told apart by its class
    assert isinstance(joined, BinaryBytes) and joined == bytes(frame)


def test_the_public_encoders_still_give_one_buffer() -> None:
    msg = build({"d": b"z"})
    assert type(encode_message(msg)) is bytes and encode_message(msg) == bytes(encode_message_parts(msg))
    mid, body = encode_request("app", "files", {"d": b"z"})
    assert type(body) is bytes and body[0] == 0 and decode_message(body).payload == {"d": b"z"}
    assert type(encode_response(msg, b"r")) is bytes
    mid, parts = encode_request_parts("app", "files", [b"z"])
    assert isinstance(parts, BinaryFrame)


def test_the_tagged_form_replaces_each_attachment_by_its_base64() -> None:
    body = encode_message_parts(build({"d": b"\x00\xff", "n": [b""]}, headers={"k": "v"}))
    assert isinstance(body, BinaryFrame)
    tagged = json.loads(body.tagged())
    assert tagged["payload"] == {"d": {"$base64": "AP8="}, "n": [{"$base64": ""}]}
    assert "attachments" not in tagged and tagged["headers"] == {"k": "v"}
    legacy = json.loads(body.tagged(legacy=True))
    assert list(legacy) == ["message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"]
    assert legacy["payload"] == tagged["payload"]
    assert body.tagged() is body.tagged()  # made once, whatever the number of peers
    framed = frame_parts(body)
    assert isinstance(framed, BinaryFrame)
    assert framed.tagged() == encode_frame(body.tagged())
    received = as_binary(encode_frame(bytes(body)))
    assert received.tagged() == framed.tagged() and received.tagged(True) == framed.tagged(True)
    assert tagged_payload({"d": b"\x00\xff"}) == {"d": {"$base64": "AP8="}}


def test_received_attachments_are_bytes_or_views_of_the_frame() -> None:
    body = bytes(encode_message_parts(build({"a": b"one", "b": [b"two"]})))
    msg = decode_message(body)
    assert msg.payload == {"a": b"one", "b": [b"two"]} and type(msg.payload["a"]) is bytes
    viewed = decode_message(body, views=True)
    assert isinstance(viewed.payload["a"], memoryview) and viewed.payload["a"].obj is body
    assert with_bytes(viewed.payload, viewed.attachments) == msg.payload


def test_an_integral_number_is_an_index_as_javascript_reads_it() -> None:
    envelope = b'{"message_id":"m","app_id":"app","channel_id":"c","message_type":"request","payload":{"d":[null]},"attachments":[["d",0.0]]}'
    body = b"\x00" + struct.pack(">III", len(envelope), 1, 2) + envelope + b"ok"
    msg = decode_message(body, views=True)
    assert msg.attachments == [["d", 0]] and with_bytes(msg.payload, msg.attachments) == {"d": [b"ok"]}


def test_split_checks_the_layout_before_slicing() -> None:
    with pytest.raises(FrameError):
        split(b"\x00" + struct.pack(">II", 2, 3) + b"\x00\x00\x00\x01")
    head, views = split(b"\x00" + struct.pack(">III", 2, 1, 3) + b"{}abc")
    assert head == b"{}" and [bytes(v) for v in views] == [b"abc"]


# -- the protocol's rules (§16.1, §16.2) ------------------------------------------------------


def server(features: list[str] | None) -> ServerProtocol:
    proto = ServerProtocol(server_name="t")
    payload: dict[str, Any] = {"action": "connect", "connection_id": "w", "protocol": 2, "client": "t"}
    if features is not None:
        payload["features"] = features
    (body,) = proto.receive_data(encode_frame(encode_message(Message.build(MessageType.REQUEST, "app", "system", payload, message_id="hello"))))
    assert isinstance(proto.receive_frame(body), ConnectRequested)
    proto.accept("w")
    proto.data_to_send()
    return proto


def receive(proto: Any, frame: bytes | BinaryFrame) -> Any:
    (body,) = proto.receive_data(bytes(frame))
    return proto.receive_frame(body)


def sent(proto: Any) -> list[Message]:
    return [decode_message(b) for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]


def test_binary_is_granted_independently_of_the_other_features() -> None:
    assert negotiate(["binary"]) == ["binary"]
    assert negotiate(["streams", "binary"]) == ["binary"]
    assert "binary" in server(["cancel", "streams", "binary"]).features


def test_a_granted_connection_gets_its_messages_with_views() -> None:
    proto = server(["binary"])
    msg = receive(proto, frame_parts(encode_message_parts(build({"d": b"data"}))))
    assert isinstance(msg, Message) and isinstance(msg.payload["d"], memoryview) and msg.attachments == [["d"]]


@pytest.mark.parametrize("mtype", [MessageType.REQUEST, MessageType.PUBLISH, MessageType.NOTIFICATION])
def test_a_binary_frame_without_the_grant_is_refused_and_the_connection_stays(mtype: MessageType) -> None:
    proto = server(["cancel", "streams"])
    event = receive(proto, frame_parts(encode_message_parts(build({"d": b"data"}, mtype))))
    assert isinstance(event, MessageRefused) and event.code == ErrorCode.BAD_MESSAGE
    (answer,) = sent(proto)
    assert answer.reply_to == "m1" and answer.error is not None and "binary frames were not negotiated" in answer.error.message
    assert proto.state is ProtocolState.OPEN


def test_attachments_that_do_not_fit_are_refused_and_the_connection_stays() -> None:
    proto = server(["binary"])
    body = b"\x00" + struct.pack(">III", 0, 1, 1)
    envelope = b'{"message_id":"m9","app_id":"app","channel_id":"c","message_type":"request","payload":{"d":1},"attachments":[["d"]]}'
    body = b"\x00" + struct.pack(">III", len(envelope), 1, 1) + envelope + b"x"
    event = receive(proto, encode_frame(body))
    assert isinstance(event, MessageRefused) and "does not lead to a null" in event.text
    assert sent(proto)[0].reply_to == "m9" and proto.state is ProtocolState.OPEN


def test_a_json_frame_with_attachments_is_refused() -> None:
    proto = server(["binary"])
    event = receive(proto, encode_frame(b'{"message_id":"m2","app_id":"app","channel_id":"c","message_type":"request","attachments":[[]]}'))
    assert isinstance(event, MessageRefused) and "only a binary frame" in event.text


def test_a_broken_layout_fails_the_connection() -> None:
    proto = server(["binary"])
    event = receive(proto, encode_frame(b"\x00" + struct.pack(">II", 2, 0) + b"{}"))
    assert isinstance(event, ProtocolViolation) and event.code == ErrorCode.BAD_FRAME
    assert proto.state is ProtocolState.ERROR


def test_a_binary_connect_is_not_a_connect() -> None:
    proto = ServerProtocol()
    payload = {"action": "connect", "connection_id": "w", "protocol": 2, "blob": b"x"}
    event = receive(proto, frame_parts(encode_message_parts(Message.build(MessageType.REQUEST, "app", "system", payload, message_id="h"))))
    assert isinstance(event, ProtocolViolation) and event.code == ErrorCode.BAD_MESSAGE


def test_another_apps_binary_frame_is_still_forbidden() -> None:
    proto = server(["cancel"])
    other = Message.build(MessageType.REQUEST, "other", "files", {"d": b"x"}, message_id="m3")
    event = receive(proto, frame_parts(encode_message_parts(other)))
    assert isinstance(event, ProtocolViolation) and event.code == ErrorCode.FORBIDDEN


def test_the_core_sends_the_tagged_form_to_a_peer_without_binary() -> None:
    plain, granted = server(None), server(["binary"])
    msg = build({"d": b"\x01"}, MessageType.PUBLISH)
    plain.send(msg)
    granted.send(msg)
    (out,) = plain.data_to_send()
    assert json.loads(out[4:])["payload"] == {"d": {"$base64": "AQ=="}}
    (out,) = granted.data_to_send()
    assert out[4] == 0 and decode_message(out[4:]).payload == {"d": b"\x01"}


def client(granted: list[str] | None) -> ClientProtocol:
    proto = ClientProtocol("app", "w", client="t", features=("cancel", "streams", "binary"))
    hello = proto.connect()
    assert json.loads(proto.data_to_send()[0][4:])["payload"]["features"] == ["cancel", "streams", "binary"]
    payload: dict[str, Any] = {"status": "connected", "connection_id": "w", "protocol": 2, "max_frame_size": 1 << 24}
    if granted is not None:
        payload["features"] = granted
    assert isinstance(receive(proto, encode_frame(encode_message(Message.build(MessageType.RESPONSE, "app", "system", payload, reply_to=hello)))), Connected)
    return proto


def test_a_client_gets_bytes() -> None:
    proto = client(["binary"])
    msg = receive(proto, frame_parts(encode_message_parts(build({"d": b"data"}, MessageType.PUBLISH))))
    assert msg.payload == {"d": b"data"} and type(msg.payload["d"]) is bytes


def test_a_server_that_sends_binary_it_did_not_grant_breaks_the_protocol() -> None:
    proto = client(["cancel"])
    event = receive(proto, frame_parts(encode_message_parts(build({"d": b"data"}, MessageType.PUBLISH))))
    assert isinstance(event, ProtocolViolation) and event.code == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    ("mtype", "payload", "paths", "attachments"),
    [
        ("publish", {"a": 1}, [["a"]], [b"x"]),  # the path leads to no null
        ("publish", {"a": None}, [["a"], ["a"]], [b"x", b"y"]),  # the same path twice
        ("publish", {"a": None}, [], [b"x"]),  # fewer paths than attachments
        ("subscribe", {"a": None}, [["a"]], [b"x"]),  # a type that carries none
        ("publish", {"a": None}, [["a"]], None),  # attachments in a JSON frame
    ],
)
def test_a_server_whose_attachments_do_not_fit_breaks_the_protocol(mtype: str, payload: Any, paths: Any, attachments: list[bytes] | None) -> None:
    """Granted, but the paths do not fit the payload (or the frame cannot
    carry any): a violation, as the Node client takes it (§16.1, §16.2)."""
    envelope = {**ENVELOPE, "message_type": mtype, "payload": payload, "attachments": paths}
    body = json.dumps(envelope).encode() if attachments is None else _binary(envelope, attachments, n=None, lengths=None, j_delta=0, tail=b"")
    proto = client(["binary"])
    event = receive(proto, encode_frame(body))
    assert isinstance(event, ProtocolViolation) and event.code == ErrorCode.BAD_MESSAGE
    assert proto.state is ProtocolState.ERROR


# -- fuzz: a typed error, never a crash -------------------------------------------------------

ENVELOPE = {"message_id": "f", "app_id": "app", "channel_id": "c", "message_type": "request"}


def _binary(envelope: dict[str, Any], attachments: list[bytes], *, n: int | None, lengths: list[int] | None, j_delta: int, tail: bytes) -> bytes:
    text = json.dumps(envelope).encode()
    counts = [len(a) for a in attachments] if lengths is None else lengths
    count = len(counts) if n is None else n
    return struct.pack(">BII", 0, max(len(text) + j_delta, 0), count) + b"".join(struct.pack(">I", c & 0xFFFFFFFF) for c in counts) + text + b"".join(attachments) + tail


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=8,
)
paths = st.lists(st.one_of(st.text(max_size=2), st.integers(-2, 4), st.floats(allow_nan=False, width=16), st.booleans(), st.none()), max_size=3)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=json_values,
    att_paths=st.one_of(st.lists(paths, max_size=4), json_values),
    attachments=st.lists(st.binary(max_size=6), max_size=4),
    n=st.one_of(st.none(), st.integers(0, 70000)),
    lengths=st.one_of(st.none(), st.lists(st.integers(0, 2**32 - 1), max_size=5)),
    j_delta=st.sampled_from([0, 0, 0, -1, 1, 1000]),
    tail=st.sampled_from([b"", b"", b"x"]),
    mtype=st.sampled_from(["request", "publish", "subscribe", "stream_item", "credit"]),
)
def test_fuzzed_binary_frames_decode_or_raise_a_typed_error(
    payload: Any, att_paths: Any, attachments: list[bytes], n: int | None, lengths: list[int] | None, j_delta: int, tail: bytes, mtype: str
) -> None:
    envelope = {**ENVELOPE, "message_type": mtype, "payload": payload, "attachments": att_paths}
    body = _binary(envelope, attachments, n=n, lengths=lengths, j_delta=j_delta, tail=tail)
    try:
        msg = decode_message(body)
    except (FrameError, MessageError) as exc:
        assert exc.code in ("bad_frame", "bad_message")
        return
    assert len(msg.attachments) == (n if n is not None else len(lengths) if lengths is not None else len(attachments))
    # Through a connection: an event or a message, never an exception.
    proto = server(["binary"])
    (got,) = proto.receive_data(len(body).to_bytes(4, "big") + body)
    assert isinstance(proto.receive_frame(got), (Message, MessageRefused))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), split_at=st.integers(0, 90))
def test_fuzzed_bytes_after_the_marker_never_crash_a_connection(data: bytes, split_at: int) -> None:
    body = b"\x00" + data
    proto = server(["binary"])
    wire = len(body).to_bytes(4, "big") + body
    frames = proto.receive_data(wire[:split_at]) + proto.receive_data(wire[split_at:])
    (frame,) = frames
    event = proto.receive_frame(frame)
    assert isinstance(event, (Message, MessageRefused, ProtocolViolation))
    if isinstance(event, ProtocolViolation):
        assert event.code in (ErrorCode.BAD_FRAME, ErrorCode.BAD_MESSAGE, ErrorCode.FORBIDDEN)
    try:
        decode_message(body)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(payload=st.recursive(st.none() | st.integers() | st.text(max_size=3) | st.binary(max_size=5), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10))
def test_any_payload_round_trips_through_a_binary_frame(payload: Any) -> None:
    body = encode_message(build(payload))
    msg = decode_message(body)
    assert msg.payload == payload
    assert decode_message(body, views=True).payload == payload
