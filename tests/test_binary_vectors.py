"""The shared binary-frame vectors (interop-tests/vectors/binary_frames.json,
docs/protocol.md §16.2): every valid frame decodes to its message with its
attachments in place, whole, one byte at a time and with a frame after it;
every invalid one is refused with its code; the canonical ones are
re-encoded byte for byte. The Node suite reads the same file."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipc_protocol import FrameDecoder, FrameError, Message, MessageError, MessageType, decode_message, encode_frame, encode_message
from ipc_protocol.attachments import put

from .vectors import ROOT

DOC = json.loads((ROOT / "interop-tests" / "vectors" / "binary_frames.json").read_text(encoding="utf-8"))
OK = [v for v in DOC["vectors"] if "message" in v]
BAD = [v for v in DOC["vectors"] if "error" in v]
CANONICAL = [v for v in OK if v["canonical"]]


def _body(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["hex"])[4:]


def _expected_payload(vector: dict[str, Any]) -> Any:
    paths = [a["path"] for a in vector["attachments"]]
    return put(vector["message"]["payload"], paths, [bytes.fromhex(a["hex"]) for a in vector["attachments"]])


def _as_wire(msg: Message) -> dict[str, Any]:
    wire = msg.model_dump(exclude_none=True, exclude={"attachments"})
    wire.setdefault("reply_to", None)
    wire.setdefault("payload", None)
    wire["message_type"] = msg.message_type.value
    return wire


def test_the_file_has_both_kinds() -> None:
    assert len(OK) >= 5 and len(CANONICAL) >= 4
    assert {v["error"] for v in BAD} == {"bad_frame", "bad_message"}


@pytest.mark.parametrize("vector", OK, ids=[v["name"] for v in OK])
def test_valid_frames_decode(vector: dict[str, Any]) -> None:
    msg = decode_message(_body(vector))
    assert msg.payload == _expected_payload(vector)
    expected = {**vector["message"], "payload": msg.payload}
    assert _as_wire(msg) == expected
    assert msg.attachments == [a["path"] for a in vector["attachments"]]
    for value in _leaves(msg.payload):
        assert value.__class__ is not memoryview  # users get bytes (§16.3)


@pytest.mark.parametrize("vector", OK, ids=[v["name"] for v in OK])
def test_valid_frames_decode_as_views_of_the_frame(vector: dict[str, Any]) -> None:
    body = _body(vector)
    msg = decode_message(body, views=True)
    views = [v for v in _leaves(msg.payload) if isinstance(v, memoryview)]
    assert len(views) == len(vector["attachments"])
    assert all(v.obj is body for v in views)  # nothing copied (§16.4)


@pytest.mark.parametrize("vector", OK, ids=[v["name"] for v in OK])
def test_valid_frames_split_any_way(vector: dict[str, Any]) -> None:
    wire = bytes.fromhex(vector["hex"])
    decoder = FrameDecoder()
    bodies: list[bytes] = []
    for i in range(len(wire)):
        bodies += decoder.feed(wire[i : i + 1])
    trailing = encode_frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish"}')
    assert isinstance(trailing, bytes)
    bodies += decoder.feed(wire + trailing)
    assert [decode_message(b).payload for b in bodies[:2]] == [_expected_payload(vector)] * 2
    assert decode_message(bodies[2]).message_id == "x"


@pytest.mark.parametrize("vector", BAD, ids=[v["name"] for v in BAD])
def test_invalid_frames_are_refused_with_their_code(vector: dict[str, Any]) -> None:
    expected = FrameError if vector["error"] == "bad_frame" else MessageError
    with pytest.raises(expected) as caught:
        decode_message(_body(vector))
    assert caught.type is expected or vector["error"] == "bad_message"
    assert caught.value.code == vector["error"]


@pytest.mark.parametrize("vector", CANONICAL, ids=[v["name"] for v in CANONICAL])
def test_canonical_frames_encode_byte_for_byte(vector: dict[str, Any]) -> None:
    fields = {k: v for k, v in vector["message"].items() if k not in ("message_id", "app_id", "channel_id", "message_type", "payload")}
    msg = Message.build(
        MessageType(vector["message"]["message_type"]),
        vector["message"]["app_id"],
        vector["message"]["channel_id"],
        _expected_payload(vector),
        message_id=vector["message"]["message_id"],
        **{k: v for k, v in fields.items() if k != "timestamp"},
    )
    msg = msg.model_copy(update={"timestamp": fields.get("timestamp", 0)})
    assert bytes(encode_frame(encode_message(msg))).hex() == vector["hex"]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]
