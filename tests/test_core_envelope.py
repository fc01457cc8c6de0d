"""The envelope against the shared golden vectors, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol import FrameDecoder, Message, MessageType, decode_message, encode_frame, encode_message
from ipc_protocol.exceptions import MessageError, ProtocolError

from .vectors import BAD, OK


def _decode_stream(data: bytes) -> list[Message]:
    return [decode_message(b) for b in FrameDecoder().feed(data)]


@pytest.mark.parametrize("vector", OK, ids=[v["name"] for v in OK])
def test_vector_decodes(vector: dict) -> None:
    [msg] = _decode_stream(bytes.fromhex(vector["hex"]))
    assert msg.wire_dict() == vector["message"]


@pytest.mark.parametrize("vector", OK, ids=[v["name"] for v in OK])
def test_vector_decodes_byte_by_byte(vector: dict) -> None:
    data = bytes.fromhex(vector["hex"])
    dec = FrameDecoder()
    bodies: list[bytes] = []
    for i in range(len(data)):
        bodies += dec.feed(data[i : i + 1])
    assert [decode_message(b).wire_dict() for b in bodies] == [vector["message"]]


@pytest.mark.parametrize("vector", [v for v in OK if v["canonical"]], ids=lambda v: v["name"])
def test_canonical_vector_encodes_to_the_same_bytes(vector: dict) -> None:
    msg = Message.model_validate(vector["message"])
    assert encode_frame(encode_message(msg)).hex() == vector["hex"]


@pytest.mark.parametrize("vector", OK, ids=[v["name"] for v in OK])
def test_vector_round_trips(vector: dict) -> None:
    msg = Message.model_validate(vector["message"])
    assert decode_message(encode_message(msg)).wire_dict() == vector["message"]


def test_all_vectors_in_one_chunk() -> None:
    data = b"".join(bytes.fromhex(v["hex"]) for v in OK)
    assert [m.wire_dict() for m in _decode_stream(data)] == [v["message"] for v in OK]


@pytest.mark.parametrize("vector", BAD, ids=[v["name"] for v in BAD])
def test_error_vector_raises_its_code(vector: dict) -> None:
    with pytest.raises(ProtocolError) as info:
        _decode_stream(bytes.fromhex(vector["hex"]))
    assert info.value.code == vector["error"]


def test_legacy_encoding_keeps_only_the_seven_fields() -> None:
    msg = Message.build(MessageType.PUBLISH, "a", "c", {"x": 1}, headers={"t": "1"}, ack=True, timeout_ms=5)
    legacy = decode_message(encode_message(msg, legacy=True))
    import json

    assert set(json.loads(encode_message(msg, legacy=True))) == {
        "message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to",
    }
    assert legacy.headers is None and legacy.ack is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), {"x": [float("nan")]}])
def test_nan_and_infinity_are_refused_on_encode(bad: object) -> None:
    msg = Message.build(MessageType.PUBLISH, "a", "c", bad)
    with pytest.raises(MessageError):
        encode_message(msg)


def test_the_letters_nan_inside_a_string_are_fine() -> None:
    msg = Message.build(MessageType.PUBLISH, "a", "c", {"NaN": "Infinity and NaN"})
    assert decode_message(encode_message(msg)).payload == {"NaN": "Infinity and NaN"}


def test_unserialisable_payload_is_a_message_error() -> None:
    with pytest.raises(MessageError):
        encode_message(Message.build(MessageType.PUBLISH, "a", "c", object()))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.text(min_size=1, max_size=20))
def test_property_payloads_round_trip(payload: object, mid: str) -> None:
    msg = Message.build(MessageType.REQUEST, "app", "ch", payload, message_id=mid)
    assert decode_message(encode_message(msg)).payload == payload


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_decode_message_or_documented_error(data: bytes) -> None:
    try:
        decode_message(data)
    except ProtocolError as exc:
        assert exc.code in ("bad_frame", "bad_message")


def test_legacy_encoding_moves_the_error_into_the_payload() -> None:
    from ipc_protocol.messages import error_response

    req = Message.build(MessageType.REQUEST, "a", "c", None)
    err = error_response(req, "no_responders", "nobody", remote_type="X")
    legacy = decode_message(encode_message(err, legacy=True))
    assert legacy.error is None
    assert legacy.payload == {"error": {"code": "no_responders", "message": "nobody", "remote_type": "X"}}
