"""Writes frames.json from the literal bodies below.

The expected messages are written by hand here, never computed by the code
under test, so the vectors stay a fixed reference for both languages. Run it
only when adding a vector: ``python interop-tests/vectors/make_vectors.py``.

Each vector: ``hex`` (the bytes on the wire, prefix included) and either
``message`` (the decoded envelope, as the JSON object a decoder must produce
after defaults are applied) or ``error`` (the error code a decoder raises).
``canonical: true`` means an encoder given ``message`` must produce exactly
``hex`` (field order and number formatting fixed by docs/protocol.md).
"""

import json
from pathlib import Path


def frame(body: bytes) -> str:
    return (len(body).to_bytes(4, "big") + body).hex()


def raw(prefix_len: int, body: bytes) -> str:
    return (prefix_len.to_bytes(4, "big") + body).hex()


BASE = {"reply_to": None}


def msg(**fields):
    out = {"payload": None, "timestamp": 0, "reply_to": None}
    out.update(fields)
    return out


vectors = []


def ok(name, body: str | bytes, message, canonical=False):
    b = body.encode("utf-8") if isinstance(body, str) else body
    vectors.append({"name": name, "hex": frame(b), "message": message, "canonical": canonical})


def bad(name, hexstr, error):
    vectors.append({"name": name, "hex": hexstr, "error": error})


ok(
    "request canonical",
    '{"message_id":"m1","app_id":"shop","channel_id":"orders.create","message_type":"request",'
    '"payload":{"sku":"A-1","qty":2},"timestamp":1700000000.5,"reply_to":null}',
    msg(message_id="m1", app_id="shop", channel_id="orders.create", message_type="request",
        payload={"sku": "A-1", "qty": 2}, timestamp=1700000000.5),
    canonical=True,
)
ok(
    "response with reply_to and headers",
    '{"message_id":"r1","app_id":"shop","channel_id":"orders.create","message_type":"response",'
    '"payload":[1,2,3],"timestamp":1700000000.25,"reply_to":"m1","headers":{"trace":"abc"}}',
    msg(message_id="r1", app_id="shop", channel_id="orders.create", message_type="response",
        payload=[1, 2, 3], timestamp=1700000000.25, reply_to="m1", headers={"trace": "abc"}),
    canonical=True,
)
ok(
    "error response",
    '{"message_id":"r2","app_id":"shop","channel_id":"math.div","message_type":"response",'
    '"payload":null,"timestamp":1700000000.5,"reply_to":"m2","error":{"code":"handler_error",'
    '"message":"division by zero","remote_type":"ZeroDivisionError"}}',
    msg(message_id="r2", app_id="shop", channel_id="math.div", message_type="response",
        timestamp=1700000000.5, reply_to="m2",
        error={"code": "handler_error", "message": "division by zero", "remote_type": "ZeroDivisionError"}),
    canonical=True,
)
ok(
    "publish with ack",
    '{"message_id":"p1","app_id":"shop","channel_id":"ticks.eu","message_type":"publish",'
    '"payload":{"v":1.5},"timestamp":1700000000.5,"reply_to":null,"ack":true}',
    msg(message_id="p1", app_id="shop", channel_id="ticks.eu", message_type="publish",
        payload={"v": 1.5}, timestamp=1700000000.5, ack=True),
    canonical=True,
)
ok(
    "request with timeout_ms",
    '{"message_id":"m3","app_id":"a","channel_id":"c","message_type":"request",'
    '"payload":"x","timestamp":1700000000.5,"reply_to":null,"timeout_ms":2500}',
    msg(message_id="m3", app_id="a", channel_id="c", message_type="request", payload="x",
        timestamp=1700000000.5, timeout_ms=2500),
    canonical=True,
)
ok(
    "subscribe pattern",
    '{"message_id":"s1","app_id":"a","channel_id":"orders.>","message_type":"subscribe",'
    '"payload":null,"timestamp":1700000000.5,"reply_to":null}',
    msg(message_id="s1", app_id="a", channel_id="orders.>", message_type="subscribe",
        timestamp=1700000000.5),
    canonical=True,
)
ok(
    "legacy connect (version 1, no protocol field)",
    '{"message_id": "6f1c", "app_id": "chat", "channel_id": "system", "message_type": "request", '
    '"payload": {"action": "connect", "connection_id": "c-1"}, "timestamp": 1700000000.123, "reply_to": null}',
    msg(message_id="6f1c", app_id="chat", channel_id="system", message_type="request",
        payload={"action": "connect", "connection_id": "c-1"}, timestamp=1700000000.123),
)
ok(
    "minimal: only the required fields",
    '{"message_id":"n1","app_id":"a","channel_id":"c","message_type":"notification"}',
    msg(message_id="n1", app_id="a", channel_id="c", message_type="notification"),
)
ok(
    "unknown fields are ignored",
    '{"message_id":"n2","app_id":"a","channel_id":"c","message_type":"notification","future":{"x":1},"v":3}',
    msg(message_id="n2", app_id="a", channel_id="c", message_type="notification"),
)
ok(
    "unicode: astral, escapes, NUL, line separators",
    '{"message_id":"u1","app_id":"a","channel_id":"c","message_type":"publish",'
    '"payload":"😀 é \\u0000 \\n\\t\\" \\\\ \u2028 \\ud83d\\ude00","timestamp":1700000000.5,"reply_to":null}',
    msg(message_id="u1", app_id="a", channel_id="c", message_type="publish",
        payload="😀 é \u0000 \n\t\" \\ \u2028 😀", timestamp=1700000000.5),
)
ok(
    "canonical unicode (raw UTF-8, control characters escaped)",
    '{"message_id":"u2","app_id":"a","channel_id":"c","message_type":"publish",'
    '"payload":"😀é\\u0000\\n","timestamp":1700000000.5,"reply_to":null}',
    msg(message_id="u2", app_id="a", channel_id="c", message_type="publish",
        payload="😀é\u0000\n", timestamp=1700000000.5),
    canonical=True,
)
ok(
    "deep payload and large integer",
    '{"message_id":"d1","app_id":"a","channel_id":"c","message_type":"request",'
    '"payload":{"a":[{"b":[[[]]]}],"n":9007199254740991,"f":-0.5e-3,"t":true,"z":null},"timestamp":1,"reply_to":null}',
    msg(message_id="d1", app_id="a", channel_id="c", message_type="request",
        payload={"a": [{"b": [[[]]]}], "n": 9007199254740991, "f": -0.0005, "t": True, "z": None}, timestamp=1),
)

# Errors a decoder must raise, by code.
bad("zero length", "00000000", "bad_frame")
bad("length over the default 16 MiB limit", "01000001", "too_large")
bad("length 0xffffffff", "ffffffff7b7d", "too_large")
bad("not JSON", raw(5, b"hello"), "bad_frame")
bad("invalid UTF-8", frame(b'{"a":"\xff"}'), "bad_frame")
bad("JSON array, not an object", frame(b"[1,2]"), "bad_frame")
bad("JSON string", frame(b'"hi"'), "bad_frame")
bad("NaN is not JSON", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","payload":NaN}'), "bad_frame")
bad("truncated JSON", frame(b'{"message_id":"x"'), "bad_frame")
bad("lone surrogate escape", frame(b'{"message_id":"\\ud800","app_id":"a","channel_id":"c","message_type":"publish"}'), "bad_frame")
bad("missing message_type", frame(b'{"message_id":"x","app_id":"a","channel_id":"c"}'), "bad_message")
bad("unknown message_type", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"shout"}'), "bad_message")
bad("message_id is a number", frame(b'{"message_id":1,"app_id":"a","channel_id":"c","message_type":"publish"}'), "bad_message")
bad("headers value not a string", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","headers":{"k":1}}'), "bad_message")
bad("negative timeout_ms", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"request","timeout_ms":-1}'), "bad_message")
bad("ack not a boolean", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","ack":"yes"}'), "bad_message")
bad("error without code", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"response","error":{"message":"m"}}'), "bad_message")

# Streams and cancellation (docs/protocol.md §15): the frames and fields of §15.2.
ok(
    "stream request canonical (window, idle_timeout_ms)",
    '{"message_id":"s1","app_id":"shop","channel_id":"ticks","message_type":"request","payload":{"n":3},'
    '"timestamp":1700000000.5,"reply_to":null,"timeout_ms":5000,"window":64,"idle_timeout_ms":250.5}',
    msg(message_id="s1", app_id="shop", channel_id="ticks", message_type="request", payload={"n": 3},
        timestamp=1700000000.5, timeout_ms=5000, window=64, idle_timeout_ms=250.5),
    canonical=True,
)
ok(
    "stream_item canonical",
    '{"message_id":"i1","app_id":"shop","channel_id":"ticks","message_type":"stream_item","payload":{"tick":1},'
    '"timestamp":1700000000.5,"reply_to":"s1"}',
    msg(message_id="i1", app_id="shop", channel_id="ticks", message_type="stream_item", payload={"tick": 1},
        timestamp=1700000000.5, reply_to="s1"),
    canonical=True,
)
ok(
    "stream_end canonical",
    '{"message_id":"e1","app_id":"shop","channel_id":"ticks","message_type":"stream_end","payload":null,'
    '"timestamp":1700000000.5,"reply_to":"s1"}',
    msg(message_id="e1", app_id="shop", channel_id="ticks", message_type="stream_end", timestamp=1700000000.5, reply_to="s1"),
    canonical=True,
)
ok(
    "credit canonical",
    '{"message_id":"c1","app_id":"shop","channel_id":"ticks","message_type":"credit","payload":null,'
    '"timestamp":1700000000.5,"reply_to":"s1","window":32}',
    msg(message_id="c1", app_id="shop", channel_id="ticks", message_type="credit", timestamp=1700000000.5, reply_to="s1", window=32),
    canonical=True,
)
ok(
    "cancel canonical",
    '{"message_id":"x1","app_id":"shop","channel_id":"ticks","message_type":"cancel","payload":{"reason":"cancelled"},'
    '"timestamp":1700000000.5,"reply_to":"s1"}',
    msg(message_id="x1", app_id="shop", channel_id="ticks", message_type="cancel", payload={"reason": "cancelled"},
        timestamp=1700000000.5, reply_to="s1"),
    canonical=True,
)
# JSON.parse cannot tell 2.0 from 2: an integral number is its integer (§1.2).
ok(
    "credit whose window is written 2.0 grants 2",
    '{"message_id":"c2","app_id":"shop","channel_id":"ticks","message_type":"credit","payload":null,'
    '"timestamp":1700000000.5,"reply_to":"s1","window":2.0}',
    msg(message_id="c2", app_id="shop", channel_id="ticks", message_type="credit", timestamp=1700000000.5, reply_to="s1", window=2),
)
ok(
    "stream request whose window is written 1e1 opens with 10",
    '{"message_id":"s2","app_id":"shop","channel_id":"ticks","message_type":"request","payload":null,'
    '"timestamp":1700000000.5,"reply_to":null,"window":1e1}',
    msg(message_id="s2", app_id="shop", channel_id="ticks", message_type="request", timestamp=1700000000.5, window=10),
)
bad("window 0", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"credit","reply_to":"s","window":0}'), "bad_message")
bad("window over 2^31-1", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"credit","reply_to":"s","window":2147483648}'), "bad_message")
bad("window not an integer", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"request","window":1.5}'), "bad_message")
bad("credit window 1.5", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"credit","reply_to":"s","window":1.5}'), "bad_message")
bad("window a boolean", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"credit","reply_to":"s","window":true}'), "bad_message")
bad("window 2147483648.0", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"credit","reply_to":"s","window":2147483648.0}'), "bad_message")
bad("window a string", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"request","window":"8"}'), "bad_message")
bad("idle_timeout_ms zero", frame(b'{"message_id":"x","app_id":"a","channel_id":"c","message_type":"request","window":8,"idle_timeout_ms":0}'), "bad_message")

out = {
    "description": __doc__.split("\n\n")[1].replace("\n", " "),
    "max_frame_size": 16 * 1024 * 1024,
    "vectors": vectors,
}
Path(__file__).with_name("frames.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
print(len(vectors), "vectors")
