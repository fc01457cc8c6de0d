"""The encoders that write a frame straight from its fields (a request, a
publish, a response) against the bytes of the message built and encoded
whole, and what every encoder refuses (docs/protocol.md §1.1, §1.2)."""

from __future__ import annotations

import json

import pytest

from ipc_protocol import Message, MessageType, decode_message, encode_message
from ipc_protocol.exceptions import FrameError, MessageError


def _same_but_id_and_time(fast: bytes, slow: bytes) -> None:
    a, b = json.loads(fast), json.loads(slow)
    assert list(a) == list(b)  # same fields, same order
    for d in (a, b):
        d.pop("message_id")
        d.pop("timestamp")
    assert a == b


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(
    ("payload", "extra"),
    [({"a": [1, 2.5, None]}, {}), (None, {"timeout_ms": 1500}), ("x", {"timeout_ms": 0, "headers": {"trace": "t1"}})],
)
def test_encode_request_gives_the_bytes_of_a_built_request(payload: object, extra: dict, legacy: bool) -> None:
    from ipc_protocol import encode_request

    message_id, fast = encode_request("app", "math.add", payload, legacy=legacy, **extra)
    slow = encode_message(Message.build(MessageType.REQUEST, "app", "math.add", payload, **extra), legacy=legacy)
    assert json.loads(fast)["message_id"] == message_id
    _same_but_id_and_time(fast, slow)
    assert decode_message(fast).message_type is MessageType.REQUEST


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(("payload", "headers"), [({"a": [1, 2.5, None]}, None), ("x", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}), ({"b": b"\x00\x01"}, None)])
def test_encode_publish_parts_gives_the_body_of_a_built_publish(payload: object, headers: dict | None, legacy: bool) -> None:
    from ipc_protocol.attachments import joined
    from ipc_protocol.envelope import encode_message_parts, encode_publish_parts

    fast = joined(encode_publish_parts("app", "news", payload, headers=headers, legacy=legacy))
    slow = joined(encode_message_parts(Message.build(MessageType.PUBLISH, "app", "news", payload, headers=headers), legacy=legacy))
    if fast[:1] == b"\x00":  # binary (§16.2): the same attachments back
        assert decode_message(fast).payload == decode_message(slow).payload
    else:
        _same_but_id_and_time(fast, slow)
    msg = decode_message(fast)
    assert (msg.message_type, msg.channel_id, msg.payload, msg.ack, msg.reply_to) == (MessageType.PUBLISH, "news", payload, None, None)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("payload", [{"sum": 3}, None, [1, "two"], 0.5])
def test_encode_response_gives_the_bytes_of_response_to(payload: object, legacy: bool) -> None:
    from ipc_protocol import encode_response
    from ipc_protocol.messages import response_to

    request = Message.build(MessageType.REQUEST, "app", "math.add", {"a": 1}, timeout_ms=100, headers={"h": "v"})
    fast = encode_response(request, payload, legacy=legacy)
    _same_but_id_and_time(fast, encode_message(response_to(request, payload), legacy=legacy))
    assert decode_message(fast).reply_to == request.message_id


def test_the_fast_encoders_refuse_what_json_cannot_carry() -> None:
    from ipc_protocol import encode_request, encode_response

    with pytest.raises(MessageError):
        encode_request("app", "c", float("nan"))
    with pytest.raises(MessageError):
        encode_response(Message.build(MessageType.REQUEST, "app", "c"), {"x": object()})


def _nested(levels: int, kind: str) -> object:
    value: object = 1
    for _ in range(levels - 1):
        value = [value] if kind == "list" else {"k": value}
    return value


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_a_sender_refuses_what_no_decoder_reads_nested_too_deep(kind: str) -> None:
    """§1.1: a frame deeper than 201 levels is bad_frame at every receiver,
    so the sender refuses it locally (bad_message) instead of having its
    connection closed; 201 levels still travel."""
    deepest = Message.build(MessageType.PUBLISH, "app", "c", _nested(200, kind))  # payload is level 2
    assert decode_message(encode_message(deepest)).payload == deepest.payload
    too_deep = Message.build(MessageType.PUBLISH, "app", "c", _nested(201, kind))
    with pytest.raises(MessageError, match="nested deeper than 201"):
        encode_message(too_deep)
    with pytest.raises(FrameError):
        decode_message(json.dumps(too_deep.wire_dict()).encode())
