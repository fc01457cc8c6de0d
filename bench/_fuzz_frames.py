"""Random and mutated frames for the fuzz run (bench/fuzz.py), from a seeded
generator so a breach can be replayed from its seed. The Node twin is
bench/node/fuzz_frames.js: the same kinds of mutation, not the same bytes.

A stream is a few frames: valid envelopes and envelopes mutated the ways a
hostile or broken peer gets them wrong (docs/protocol.md §1, §1.1, §2): bit
flips, truncation, splices, zero and huge length prefixes, invalid UTF-8,
deep nesting, numbers that overflow a double, lone surrogates, JSON that is
not an object, fields of the wrong type, trailing garbage.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MUTATORS", "Stream", "random_envelope", "random_stream", "mutated_body", "splits", "dumps"]

TYPES = ["request", "response", "notification", "publish", "subscribe", "unsubscribe"]
TOKENS = ["orders", "created", "a", "b1", "*", ">", "system", "$sys", "services", "é", "", "x" * 40]
PIECES = ["a", "Z", "0", " ", '"', "\\", "/", "\n", "\t", "\x00", "\x1f", "é", "日本", "😀", "\u2028", "\ufeff", "{", "}", ":"]
ODD_NUMBERS: list[Any] = [0, -0.0, 1, -1, 0.5, 2**53 + 2, -(2**63), 1e21, 1e-7, 5e-324, 1.7976931348623157e308, -1e308, 123456789.123, 2**64]
# Raw JSON number texts: each side of the double's range, and overflows (§1.1).
RAW_NUMBERS = [
    "1e308", "1.7976931348623157e308", "1.7976931348623159e308", "1e309", "-1e400", "1E+400", "1e-400", "-0", "0.0e0",
    "9" * 308, "1" + "0" * 308, "-" + "9" * 320, "1" + "0" * 400 + ".5", "9007199254740993", "1e99999999999",
]  # fmt: skip
# Bytes that are not UTF-8: a lone continuation, overlong, a surrogate, past U+10FFFF, truncated.
BAD_UTF8 = [bytes.fromhex(h) for h in ("80", "bf", "c0af", "c1bf", "e080af", "eda080", "edbfbf", "f4908080", "f8888080", "ff", "fe", "e282", "f09f98")]
NOT_OBJECTS = ["[]", "[1,2]", '"x"', "1", "-1.5", "null", "true", "false", '""', "[{}]", "  [] ", '"{}"']
GARBAGE = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello's first bytes
    b"PING\r\n",
    b"\x00\x00\x00",
]
BAD_TEXT = ["NaN", "Infinity", "-Infinity", '"\\ud800"', '"\\udfff\\ud800"', '"a\\u0000b"', '"\u2028"', "'x'", "undefined", "0x10", "01", ".5", "+1", '"\\x41"', '"tab\there"']  # fmt: skip
MAX_U32 = 2**32


def dumps(obj: Any) -> str:
    """Compact JSON as JavaScript writes it; integral floats stay floats here (JSON does not care)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# Letters 70 % of the time, else one of PIECES.
_CHARS = [chr(97 + i) for i in range(26)] + PIECES
_CUM_WEIGHTS = list(itertools.accumulate([0.7 / 26] * 26 + [0.3 / len(PIECES)] * len(PIECES)))


def random_string(rng: random.Random, longest: int = 12) -> str:
    n = rng.randint(200, 2000) if rng.random() < 0.02 else int(rng.random() * (longest + 1))
    return "".join(rng.choices(_CHARS, cum_weights=_CUM_WEIGHTS, k=n))


def random_channel(rng: random.Random) -> str:
    """A channel or pattern: mostly valid, sometimes not (§4)."""
    if rng.random() < 0.05:
        return random_string(rng)
    return ".".join(rng.choice(TOKENS[:4]) if rng.random() < 0.8 else rng.choice(TOKENS) for _ in range(rng.randint(1, 4)))


def random_value(rng: random.Random, depth: int = 3) -> Any:
    k = rng.randrange(10 if depth > 0 else 7)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.randint(-1000, 1000)
    if k == 3:
        return rng.choice(ODD_NUMBERS)
    if k == 4:
        return (rng.random() - 0.5) * 10 ** rng.randint(-5, 20)
    if k in (5, 6):
        return random_string(rng)
    if k in (7, 8):
        keys = ["__proto__", "constructor", "message_id", ""]
        return {(rng.choice(keys) if rng.random() < 0.1 else random_string(rng, 6)): random_value(rng, depth - 1) for _ in range(rng.randrange(5))}
    return [random_value(rng, depth - 1) for _ in range(rng.randrange(5))]


def random_envelope(rng: random.Random, app_id: str = "fuzz", stray: float = 0.2) -> dict[str, Any]:
    """A valid envelope (§2), optional fields sometimes set; ``stray``: how
    often its app is another than ``app_id`` (on a server: ``forbidden``)."""
    msg: dict[str, Any] = {
        "message_id": f"m{rng.getrandbits(32):x}" if rng.random() < 0.9 else random_string(rng),
        "app_id": app_id if rng.random() >= stray else random_string(rng, 6),
        "channel_id": "system" if rng.random() < 0.2 else random_channel(rng),
        "message_type": rng.choice(TYPES),
    }
    if rng.random() < 0.9:
        msg["payload"] = {"action": rng.choice(["ping", "connect", "stats", "channels", "services", "other"])} if rng.random() < 0.15 else random_value(rng)
    if rng.random() < 0.8:
        msg["timestamp"] = 1700000000.123 if rng.random() < 0.5 else rng.randint(0, 2**31)
    if rng.random() < 0.5:
        msg["reply_to"] = f"m{rng.getrandbits(32):x}" if rng.random() < 0.8 else None
    if rng.random() < 0.15:
        msg["headers"] = {"trace": random_string(rng, 8)}
    if rng.random() < 0.15:
        msg["error"] = {"code": rng.choice(["bad_frame", "timeout", "no_responders", "handler_error", "made_up"]), "message": random_string(rng)}
    if rng.random() < 0.15:
        msg["timeout_ms"] = rng.randint(0, 60000)
    if rng.random() < 0.1:
        msg["ack"] = rng.random() < 0.5
    if rng.random() < 0.1:
        msg[random_string(rng, 6) or "extra"] = random_value(rng, 1)
    return msg


def connect_reply(rng: random.Random) -> dict[str, Any]:
    """The reply a version-2 (without ``protocol``: version-1) server sends (§3.2)."""
    payload: dict[str, Any] = {"status": "connected", "connection_id": f"c{rng.randrange(1000)}"}
    if rng.random() < 0.8:
        payload.update(protocol=2, server="fuzz", heartbeat_interval_ms=rng.choice([0, 15000]), max_frame_size=rng.choice([1024, 65536, 16777216]))
    return {"message_id": "r0", "app_id": "fuzz", "channel_id": "system", "message_type": "response", "payload": payload, "timestamp": 0, "reply_to": None}


def with_raw_payload(rng: random.Random, raw: str, app_id: str = "fuzz") -> str:
    msg = random_envelope(rng, app_id)
    msg.pop("payload", None)
    return dumps(msg)[:-1] + ',"payload":' + raw + "}"


def nested(rng: random.Random, depth: int) -> str:
    opening, closing = ("[", "]") if rng.random() < 0.5 else ('{"k":', "}")
    return opening * depth + "1" + closing * depth


def _wrong_field(rng: random.Random, app_id: str) -> str:
    msg = random_envelope(rng, app_id)
    name = rng.choice(["message_id", "app_id", "channel_id", "message_type", "timestamp", "reply_to", "headers", "error", "timeout_ms", "ack"])
    if rng.random() < 0.2:
        msg.pop(name, None)
    else:
        msg[name] = rng.choice([1, -1, True, None, "1", "request2", [], {}, {"code": 1}, -0.5, {"a": 1}, [{}]])
    return dumps(msg)


# Each mutation: (rng, a valid body, the app id) -> new body bytes.
def _bitflip(rng: random.Random, body: bytes, app: str) -> bytes:
    out = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _bytes(rng: random.Random, body: bytes, app: str) -> bytes:
    at = rng.randrange(len(body))
    op = rng.randrange(3)
    if op == 0:
        return body[:at] + rng.randbytes(rng.randint(1, 4)) + body[at:]
    if op == 1:
        return body[:at] + body[at + rng.randint(1, 8) :]
    return body[:at] + bytes([rng.choice([0x00, 0x22, 0x5C, 0x7B, 0x7D, 0x2C, 0x3A, 0xFF])]) + body[at + 1 :]


def _truncate(rng: random.Random, body: bytes, app: str) -> bytes:
    return body[: rng.randrange(len(body))]


def _splice(rng: random.Random, body: bytes, app: str) -> bytes:
    other = dumps(random_envelope(rng, app)).encode()
    return body[: rng.randint(0, len(body))] + other[rng.randrange(len(other)) :]


def _bad_utf8(rng: random.Random, body: bytes, app: str) -> bytes:
    at = body.find(b'"', rng.randrange(len(body))) + 1 or rng.randrange(len(body))
    return body[:at] + rng.choice(BAD_UTF8) + body[at:]


def _deep_nesting(rng: random.Random, body: bytes, app: str) -> bytes:
    # Around the decoders' limit (201 levels), and far past any stack.
    depth = rng.choice([20000, 200000]) if rng.random() < 0.02 else rng.choice([20, 199, 200, 201, 202, 255, 256, 1000, 5000])
    return with_raw_payload(rng, nested(rng, depth), app).encode()


def _huge_number(rng: random.Random, body: bytes, app: str) -> bytes:
    raw = rng.choice(RAW_NUMBERS)
    if rng.random() < 0.7:
        return with_raw_payload(rng, raw if rng.random() < 0.5 else f"[{raw}]", app).encode()
    msg = random_envelope(rng, app)
    msg["timestamp"] = 0
    return dumps(msg).replace('"timestamp":0', f'"timestamp":{raw}', 1).encode()


def _not_object(rng: random.Random, body: bytes, app: str) -> bytes:
    return (rng.choice(NOT_OBJECTS) if rng.random() < 0.8 else f"[{dumps(random_envelope(rng, app))}]").encode()


def _wrong_type(rng: random.Random, body: bytes, app: str) -> bytes:
    return _wrong_field(rng, app).encode()


def _bad_text(rng: random.Random, body: bytes, app: str) -> bytes:
    text = with_raw_payload(rng, rng.choice(BAD_TEXT), app)
    op = rng.randrange(6)
    if op == 0:
        text = "\ufeff" + text
    elif op == 1:
        text = text[:-1] + ",}"
    elif op == 2:
        text = text + " " + text
    elif op == 3:
        text += "/* c */"
    elif op == 4:
        text = text[:-1] + ',"message_id":' + dumps(random_string(rng)) + "}"  # a duplicate key
    return text.encode("utf-8", "surrogatepass")


MUTATORS: dict[str, Callable[[random.Random, bytes, str], bytes]] = {
    "bitflip": _bitflip,
    "bytes": _bytes,
    "truncate": _truncate,
    "splice": _splice,
    "badUtf8": _bad_utf8,
    "deepNesting": _deep_nesting,
    "hugeNumber": _huge_number,
    "notObject": _not_object,
    "wrongType": _wrong_type,
    "badText": _bad_text,
}
_NAMES = list(MUTATORS)


def _prefix(n: int) -> bytes:
    return (n % MAX_U32).to_bytes(4, "big")


def mutated_body(rng: random.Random, app_id: str = "fuzz") -> tuple[str, bytes]:
    """One mutated frame body and its mutation's name."""
    name = rng.choice(_NAMES)
    valid = dumps(random_envelope(rng, app_id)).encode()
    return name, MUTATORS[name](rng, valid, app_id)


@dataclass
class Stream:
    data: bytes
    kinds: list[str] = field(default_factory=list)  # per frame: "valid", a mutation's name, "prefix:zero"...

    @property
    def frames(self) -> int:
        return len(self.kinds)


def random_stream(rng: random.Random, *, max_frame_size: int = 16 * 1024 * 1024, first: bytes | None = None, app_id: str = "fuzz") -> Stream:
    """1-6 frames, each valid or mutated, most with the right length prefix;
    sometimes a bad prefix (zero, huge, off by some bytes), bytes that are
    no frame at all, or an unfinished frame at the end. ``first``: a body
    to start with (a connect request or reply, to get a protocol past its
    handshake)."""
    parts: list[bytes] = []
    kinds: list[str] = []
    if first is not None:
        kinds.append("handshake")
        parts += [_prefix(len(first)), first]
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.35:
            body = dumps(random_envelope(rng, app_id)).encode()
            kinds.append("valid")
            parts += [_prefix(len(body)), body]
            continue
        name, body = mutated_body(rng, app_id)
        p = rng.random()
        if p < 0.04:
            kinds.append("prefix:zero")
            parts += [_prefix(0), body]
        elif p < 0.08:
            kinds.append("prefix:huge")
            parts += [_prefix(rng.choice([max_frame_size + 1, MAX_U32 - 1, 0x7FFFFFFF, 0x80000000])), body]
        elif p < 0.12:
            kinds.append("prefix:off")
            parts += [_prefix(max(1, len(body) + rng.randint(-8, 8))), body]
        elif p < 0.14:
            kinds.append("garbage")
            parts.append(rng.choice(GARBAGE) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 64)))
        else:
            kinds.append(name)
            parts += [_prefix(len(body)), body]
    if rng.random() < 0.05:
        kinds.append("unfinished")
        body = dumps(random_envelope(rng, app_id)).encode()
        parts += [_prefix(len(body)), body[: rng.randrange(len(body))]]
    return Stream(b"".join(parts), kinds)


def splits(rng: random.Random, data: bytes, *, bytewise: bool) -> list[tuple[str, list[bytes]]]:
    """Ways to cut ``data`` into reads: whole, random chunk sizes, and (when
    asked, and for short streams) one byte at a time."""
    smallest = 1 + len(data) // 2048  # at most about 2,048 reads a stream
    largest = max(smallest, rng.choice([2, 7, 64, 1500, len(data)]))
    span = largest - smallest + 1
    rand = rng.random
    chunks: list[bytes] = []
    pos = 0
    while pos < len(data):
        n = smallest + int(rand() * span)
        chunks.append(data[pos : pos + n])
        pos += n
    ways = [("whole", [data]), ("random", chunks)]
    if bytewise:
        step = 1 if len(data) <= 4096 else -(-len(data) // 512)
        ways.append(("bytewise", [data[i : i + step] for i in range(0, len(data), step)]))
    return ways
