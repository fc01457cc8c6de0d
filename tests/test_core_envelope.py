"""The envelope against the shared golden vectors, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import json
import math
import sys

from pydantic import ValidationError

from ipc_protocol import FrameDecoder, Message, MessageType, decode_message, decode_relayed, encode_frame, encode_message
from ipc_protocol._json import _maybe_huge, loads
from ipc_protocol.envelope import _validated
from ipc_protocol.exceptions import FrameError, MessageError, ProtocolError
from ipc_protocol.relayed import decode_envelope

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


# -- decode_message gives the verdicts of its first, plainest form -------------
#
# decode_message validates most frames in one pass from the bytes, skips
# ``model_validate`` and only asks whether the JSON value is an object once
# validation has failed. These tests hold it to the verdicts of the plain
# form below (parse, check for an object, validate): the same Message, or the
# same exception class and code; and its refusals to the words of the
# two-step path (parse, then validate) whatever path the frame took.


def _reference_decode(body: bytes) -> Message:
    obj = loads(body)
    if not isinstance(obj, dict):
        raise FrameError("not an object")
    try:
        return Message.model_validate(obj)
    except ValidationError:
        raise MessageError("invalid envelope") from None


def _verdict(decode, body) -> tuple:
    try:
        msg = decode(body)
    except ProtocolError as exc:
        return (type(exc), exc.code)
    # repr tells 1 from 1.0 and True from 1, which == does not.
    return (Message, repr(msg))


def _words(decode, body) -> str | None:
    try:
        decode(body)
    except ProtocolError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _two_step(body: bytes) -> Message:
    return _validated(loads(body))


def _assert_same_verdict(body: bytes) -> None:
    expected = _verdict(_reference_decode, body)
    assert _verdict(decode_message, body) == expected
    if body[:1] != b"\x00":  # a binary frame has a path of its own (§16.2)
        assert _words(decode_message, body) == _words(_two_step, body)
    assert _verdict(decode_message, bytearray(body)) == expected
    # A body another node relays was screened for numbers that overflow a
    # double where it entered: decode_relayed gives every other verdict.
    if not _overflows(body):
        assert _verdict(decode_relayed, body) == expected


def _overflows(body: bytes) -> bool:
    try:
        loads(body)
    except FrameError as exc:
        return "overflows a double" in str(exc)
    return False


_H = '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish"'
_R = '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"response"'
EDGE_BODIES = [
    _H + "}",
    _H + ',"timestamp":null}',
    _H + ',"reply_to":5}',
    _H + ',"ack":1}',
    _R + ',"error":{"code":"x","message":null}}',
    _R + ',"error":{"code":"x"}}',
    _R + ',"error":[]}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"PUBLISH"}',
    _H + ',"payload":1e400}',
    _H + ',"zz":1e400}',
    _H + ',"payload":-1e400}',
    _H + ',"payload":1' + "0" * 300 + 'e9}',  # 1e309: many digits, a small exponent
    _H + ',"payload":-' + "9" * 250 + '.5e60}',
    _H + ',"timestamp":1e400}',
    _H + ',"payload":NaN}',
    _H + ',"zz":Infinity}',
    _H + ',"timestamp":-Infinity}',
    _H + ',"payload":' + "9" * 400 + "}",
    _H + ',"timestamp":' + "9" * 400 + "}",
    _H + ',"payload":1,"payload":2}',
    _H + ',"timestamp":"x","timestamp":1}',
    _H + ',"timestamp":1,"timestamp":"x"}',
    _H + ',"message_type":"nope"}',
    _H + ',"headers":{"a":"1","a":2}}',
    '{"message\\u005fid":"x","app_id":"a","channel_id":"c","message_type":"publish"}',
    " \n" + _H + "} \n",
    "\ufeff" + _H + "}",
    _H + ',"headers":null}',
    _H + ',"headers":["a"]}',
    _H + ',"timestamp":-0.0}',
    _H + ',"timestamp":-1}',
    _H + ',"timestamp":5}',
    _H + ',"timestamp":true}',
    _H + ',"timeout_ms":"5"}',
    _H + ',"payload":"\\udc00"}',
    _H + ',"zz":"\\ud800"}',
    _H + ',"payload":"a\x01b"}',
    _H + "}x",
    _H,
    "",
    "null", "true", "1", "-1.5", '"s"', "[]", "[{}]", "{}",
]
_W = '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"credit","reply_to":"s"'
EDGE_BODIES += [_W + f',"window":{w}}}' for w in ["2.0", "1e1", "1.5", "true", '"2"', "2147483647.0", "2147483648.0", "-0.0", "0.0", "null"]]


@pytest.mark.parametrize("body", [bytes.fromhex(v["hex"])[4:] for v in OK + BAD] + [b.encode() for b in EDGE_BODIES])
def test_decode_gives_the_reference_verdict(body: bytes) -> None:
    _assert_same_verdict(body)


@pytest.mark.parametrize(("written", "window"), [("2", 2), ("2.0", 2), ("1e1", 10), ("64.0", 64), ("2147483647.0", 2**31 - 1)])
def test_a_window_written_as_an_integral_float_is_its_integer_on_every_path(written: str, window: int) -> None:
    """JSON.parse cannot tell 2.0 from 2, so the Node decoder takes either
    (docs/protocol.md §1.2): every Python path does the same, the one-pass
    ones a server relays through included, and the window stays an int."""
    body = (_W + f',"window":{written}}}').encode()
    for decode in (decode_message, decode_relayed, decode_envelope, _two_step):
        msg = decode(body)
        assert (msg.window, type(msg.window)) == (window, int), decode
    assert f'"window":{window}}}'.encode() in encode_message(decode_message(body))  # re-encoded as the integer


@pytest.mark.parametrize("written", ["1.5", "true", '"2"', "0", "0.0", "-0.0", "2147483648", "2147483648.0", "[2]"])
def test_a_window_that_is_no_whole_number_from_1_to_2_31_minus_1_is_refused_in_the_node_decoder_s_words(written: str) -> None:
    body = (_W + f',"window":{written}}}').encode()
    for decode in (decode_message, decode_relayed, decode_envelope, _two_step):
        with pytest.raises(MessageError, match=r"^invalid envelope: window: must be an integer from 1 to 2147483647$"):
            decode(body)


@pytest.mark.parametrize("body", [b"null", b"true", b"1", b"-1.5", b'"{}"', b"[]", b"[{}]", b" [1] "])
def test_a_json_value_that_is_not_an_object_is_bad_frame(body: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode_message(body)
    assert info.value.code == "bad_frame"


# Literals ``json`` cannot write from a Python value; a placeholder string is
# swapped for one after encoding.
_LITERALS = ["1e400", "-1E+400", "1e0400", "1" + "0" * 310 + ".5", "9" * 320, "1e-400", "NaN", "-Infinity"]
_json_any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.sampled_from([f"@{i}@" for i in range(len(_LITERALS))]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
_FIELDS = ["message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to",
           "headers", "error", "timeout_ms", "ack", "window", "code", "message", "extra"]
_field_value = (
    _json_any
    | st.sampled_from(["request", "response", "publish", "PUBLISH", "", "x"])
    | st.dictionaries(st.sampled_from(["code", "message", "details", "remote_type", "a"]), _json_any, max_size=3)
    | st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(0, 3), max_size=2)
)
_VALID = [("message_id", "m"), ("app_id", "a"), ("channel_id", "c"), ("message_type", "publish")]


@st.composite
def _envelope_bodies(draw: st.DrawFn) -> bytes:
    """Mostly valid envelopes with a few fields changed, duplicated or added,
    some holding NaN, Infinity or numbers that overflow a double."""
    pairs = list(_VALID)
    for _ in range(draw(st.integers(0, 4))):
        pairs.append((draw(st.sampled_from(_FIELDS)), draw(_field_value)))
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    text = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    for i, literal in enumerate(_LITERALS):
        text = text.replace(f'"@{i}@"', literal)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


@settings(max_examples=500, deadline=None)
@given(_envelope_bodies())
def test_property_decode_gives_the_reference_verdict(body: bytes) -> None:
    _assert_same_verdict(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_decode_gives_the_reference_verdict(data: bytes) -> None:
    _assert_same_verdict(data)


@pytest.mark.parametrize(
    "number",
    ["1e400", "-1E+400", "1" + "0" * 300 + "e9", "-" + "9" * 250 + ".5e60", "9" * 320 + ".0", "1" + "0" * 400, "-" + "9" * 320],
)
def test_numbers_that_overflow_a_double_are_bad_frames(number: str) -> None:
    """docs/protocol.md §1: such a number would become infinity, which no peer can encode."""
    with pytest.raises(FrameError):
        decode_message((_H + ',"payload":' + number + "}").encode())


@pytest.mark.parametrize("value", [10**400, -(10**309), [1, {"deep": [2**1024]}]], ids=["10**400", "-10**309", "nested-2**1024"])
def test_integers_that_overflow_a_double_are_refused_before_sending(value: object) -> None:
    """Python's ints have no bound, JavaScript's numbers do: a Node peer would
    refuse the frame and drop the connection (§1.1), so it never leaves."""
    with pytest.raises(MessageError, match="overflows a double"):
        encode_message(Message.build(MessageType.PUBLISH, "app", "x", value))


def test_the_largest_finite_integers_still_travel() -> None:
    largest = int(sys.float_info.max)
    body = encode_message(Message.build(MessageType.PUBLISH, "app", "x", [largest, -largest, 2**1023]))
    assert decode_message(body).payload == [largest, -largest, 2**1023]


def test_long_numbers_that_fit_a_double_are_accepted() -> None:
    msg = decode_message((_H + ',"payload":' + "1" * 250 + "e-100}").encode())
    assert msg.payload == pytest.approx(float("1" * 250 + "e-100"))


@pytest.mark.parametrize(
    "body",
    [b"1e400", b"[1e400]", b'{"a": -1E+400}', b'{"a":[0, 1.5e308]}', b"\n2e999", b'{"a":1e0099}', b"1" + b"0" * 300 + b"e9", b'{"id":"4452e425","n":1e400}'],
)
def test_the_overflow_screen_flags_every_number_that_may_overflow(body: bytes) -> None:
    assert _maybe_huge(body)


@pytest.mark.parametrize(
    "body",
    [b'{"message_id":"c0c9e0123","reply_to":"ab-1e000"}', b'{"id":"3e012f"}', b'{"a":"e000"}', b"e000", b'{"a":1e99}', b'{"a":"1e0001e000e000"}'],
)
def test_the_overflow_screen_ignores_hex_ids_and_small_exponents(body: bytes) -> None:
    """Ids are hex: "9e012" in an id must not cost every frame a walk of its value."""
    assert not _maybe_huge(body)


_exponents = st.builds(lambda e, sign, value: f"{e}{sign}{value}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), st.integers(0, 1200))
_json_numbers = st.builds(
    lambda sign, digits, fraction, exponent: f"{sign}{digits}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.from_regex(r"\A(0|[1-9][0-9]{0,330})\Z"),
    st.sampled_from(["", ".5", ".000", ".9999"]),
    st.one_of(st.just(""), _exponents),
)


@given(_json_numbers, st.sampled_from(["{}", '{{"a":{}}}', "[1,{}]", '{{"id":"9f3e012-ab","n":\n{}}}', "[ {}]"]))
@settings(max_examples=300, deadline=None)
def test_the_overflow_screen_misses_no_number_that_overflows(number: str, frame: str) -> None:
    """Whatever its sign, digits, exponent's case and sign, and wherever it
    sits, a number that overflows a double is flagged (false alarms only
    cost a walk)."""
    if math.isinf(float(number)):
        assert _maybe_huge(frame.format(number).encode())
