"""A relaying server's decode (``ipc_protocol.relayed``): the payload of a
JSON frame stays in the frame until read, and nothing can tell the message
from one decoded whole (``ipc_protocol.deferred_payload``)."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol import Message, ProtocolError, decode_message, encode_frame, encode_message
from ipc_protocol.relayed import _validate, decode_envelope
from ipc_protocol.server_protocol import ServerProtocol

from .test_core_envelope import EDGE_BODIES, _envelope_bodies
from .vectors import BAD, OK

_FRAME = b'{"message_id":"m1","app_id":"a","channel_id":"c","message_type":"publish","payload":{"k":[1,2.5,"x"]},"timestamp":5,"headers":{"h":"v"}}'


def _outcome(decode, body: bytes):
    try:
        msg = decode(body)
    except ProtocolError as exc:
        return (type(exc), str(exc))
    return msg


def _assert_as_decoded_whole(body: bytes) -> None:
    whole = _outcome(lambda b: decode_message(b, views=True), body)
    deferred = _outcome(decode_envelope, body)
    if not isinstance(whole, Message):
        assert deferred == whole  # the same refusal, in the same words
        return
    # Each reader on a fresh decode: any of them decodes the payload.
    assert _outcome(decode_envelope, body) == whole
    assert repr(_outcome(decode_envelope, body)) == repr(whole)  # tells 1 from 1.0
    assert _outcome(decode_envelope, body).model_dump() == whole.model_dump()
    assert _outcome(decode_envelope, body).model_dump_json() == whole.model_dump_json()
    assert list(_outcome(decode_envelope, body)) == list(whole)
    assert pickle.loads(pickle.dumps(_outcome(decode_envelope, body))) == whole
    assert copy.deepcopy(_outcome(decode_envelope, body)) == whole
    msg = _outcome(decode_envelope, body)
    assert repr(msg.payload) == repr(whole.payload)
    assert msg.model_fields_set == whole.model_fields_set
    assert list(msg.__dict__) == list(whole.__dict__)


def test_this_pydantic_core_builds_the_envelope_validator() -> None:
    """Else every frame is decoded whole (envelope_validator's check)."""
    assert _validate is not None


# An empty body, and binary ones (first byte 0, §16.2): decode_envelope tells them by their first byte.
_FIRST_BYTES = [b"", b"\x00", b"\x00\x00\x00\x00\x02{}", b" " + _FRAME, b"\x01" + _FRAME]


@pytest.mark.parametrize("body", [bytes.fromhex(v["hex"])[4:] for v in OK + BAD] + [b.encode() for b in EDGE_BODIES] + _FIRST_BYTES)
def test_a_relayed_frame_decodes_as_decoded_whole(body: bytes) -> None:
    _assert_as_decoded_whole(body)


@settings(max_examples=300, deadline=None)
@given(_envelope_bodies())
def test_property_a_relayed_frame_decodes_as_decoded_whole(body: bytes) -> None:
    _assert_as_decoded_whole(body)


def test_the_payload_is_decoded_when_first_read_and_once() -> None:
    msg = decode_envelope(_FRAME)
    assert "payload" not in msg.__dict__ and "payload" not in msg.model_fields_set
    assert msg.channel_id == "c" and msg.headers == {"h": "v"} and msg.timestamp == 5
    payload = msg.payload
    assert payload == {"k": [1, 2.5, "x"]} and msg.payload is payload
    assert "payload" in msg.model_fields_set and msg.__pydantic_private__ is None
    assert msg == decode_message(_FRAME) and decode_message(_FRAME) == msg


def test_a_copy_keeps_its_own_payload_and_the_hash_reads_the_frame() -> None:
    changed = decode_envelope(_FRAME).model_copy(update={"payload": 7})
    assert changed.payload == 7 and changed == decode_message(_FRAME).model_copy(update={"payload": 7})
    assert decode_envelope(_FRAME).model_copy().payload == {"k": [1, 2.5, "x"]}
    hashable = _FRAME.replace(b'{"k":[1,2.5,"x"]}', b'"text"').replace(b',"headers":{"h":"v"}', b"")
    assert hash(decode_envelope(hashable)) == hash(decode_message(hashable))


def test_binary_frames_and_frames_that_are_not_bytes_are_decoded_whole() -> None:
    assert "payload" not in decode_envelope(_FRAME).__dict__
    assert "payload" in decode_envelope(bytearray(_FRAME)).__dict__  # a buffer that may be reused
    binary = encode_message(decode_message(_FRAME).model_copy(update={"payload": {"k": b"\x00\x01"}}))
    assert binary[:1] == b"\x00" and decode_envelope(binary).payload == {"k": b"\x00\x01"}
    nan = _FRAME.replace(b'"x"', b'"NaN"')  # may hold a literal NaN: the two-step path
    assert "payload" in decode_envelope(nan).__dict__


def _open_server_protocol() -> ServerProtocol:
    protocol = ServerProtocol()
    connect = b'{"message_id":"hello","app_id":"a","channel_id":"system","message_type":"request","payload":{"action":"connect","protocol":2}}'
    (frame,) = protocol.receive_data(encode_frame(connect))
    protocol.receive_frame(frame)  # ConnectRequested
    protocol.accept("c1", now=0.0)
    protocol.data_to_send()
    return protocol


@pytest.mark.parametrize("defer", [True, False])
def test_the_server_protocol_leaves_payloads_in_frames_when_told(defer: bool) -> None:
    protocol = _open_server_protocol()
    protocol.defer_payloads = defer
    msg = protocol.receive_frame(_FRAME)
    assert isinstance(msg, Message)
    assert ("payload" in msg.__dict__) is not defer
    assert msg.payload == {"k": [1, 2.5, "x"]}


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_the_server_protocol_gives_the_same_verdict_either_way(data: bytes) -> None:
    outcomes = []
    for defer in (True, False):
        protocol = _open_server_protocol()
        protocol.defer_payloads = defer
        item = protocol.receive_frame(data)
        sent = [decode_message(frame[4:]).model_dump(exclude={"message_id", "timestamp"}) for frame in protocol.data_to_send()]
        outcomes.append((type(item), repr(item), protocol.state, sent))
    assert outcomes[0] == outcomes[1]
