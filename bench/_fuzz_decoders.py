"""The fuzz invariant held against each Python decoder (h11's): the input
decodes, or the documented error is raised (a ProtocolError whose code is in
interop-tests/spec/error_codes.json), never anything else; and how the bytes
are split into reads never changes the outcome (docs/protocol.md §1 item 2).
A breach raises :class:`InvariantBroken`. The targets:

- ``framing``: ``FrameDecoder``: the bodies, then ``bad_frame`` or
  ``too_large`` (sticky), or the bytes still buffered;
- ``envelope``: ``decode_message`` on each body: a message, or ``bad_frame``
  / ``bad_message``; what decodes re-encodes (or is refused,
  ``bad_message``), and the re-encoding is stable;
- ``server``: ``ServerProtocol`` pumped as ``ipc_server`` pumps it: never
  raises; every frame it queues decodes; after a violation its last frame
  is the error frame with the violation's code (§6.4);
- ``client``: ``ClientProtocol`` pumped as ``ipc_client`` pumps it: never
  raises; what it returns is a message or a known event.

The Node twin is bench/node/fuzz_targets.js.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _fuzz_frames import Stream, connect_reply, dumps, random_stream, splits

from ipc_protocol import FrameDecoder, Message, decode_message, encode_message
from ipc_protocol.client_protocol import ClientProtocol, Connected, HandshakeRefused
from ipc_protocol.exceptions import IPCError, ProtocolError
from ipc_protocol.framing import FramingFailure
from ipc_protocol.protocol import MessageRefused, PingReceived, PongReceived, ProtocolState, ProtocolViolation
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol

__all__ = ["InvariantBroken", "SPEC_CODES", "DecoderFuzz", "check_stream"]

ROOT = Path(__file__).resolve().parent.parent
SPEC_CODES = frozenset(c["code"] for c in json.loads((ROOT / "interop-tests" / "spec" / "error_codes.json").read_text("utf-8"))["codes"])
FRAMING_CODES = frozenset({"bad_frame", "too_large"})  # §1 item 4
ENVELOPE_CODES = frozenset({"bad_frame", "bad_message"})  # §1.1, §2
LIMITS = [1024, 65536, 16 * 1024 * 1024]
TOKEN = "fuzz-token"
_LIVE = (ProtocolState.HANDSHAKE, ProtocolState.OPEN)


class InvariantBroken(Exception):
    """The invariant does not hold; ``target`` names the decoder."""

    def __init__(self, target: str, what: str) -> None:
        super().__init__(f"{target}: {what}")
        self.target = target


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}({getattr(exc, 'code', '')}): {str(exc)[:200]}"


def _check_error(target: str, exc: BaseException, codes: frozenset[str]) -> None:
    if not isinstance(exc, ProtocolError) or str(exc.code) not in codes or str(exc.code) not in SPEC_CODES:
        raise InvariantBroken(target, f"undocumented error {describe(exc)}") from exc


def framing_outcome(chunks: list[bytes], limit: int) -> tuple[list[bytes], str | None, int]:
    """The bodies, the error code (None: none), the bytes still buffered."""
    dec = FrameDecoder(limit)
    bodies: list[bytes] = []

    def failed(exc: BaseException) -> tuple[list[bytes], str | None, int]:
        _check_error("framing", exc, FRAMING_CODES)
        try:
            dec.feed(b"\x00")
        except ProtocolError as again:
            if again is exc:
                return bodies, str(exc.code), 0  # type: ignore[attr-defined]
        raise InvariantBroken("framing", "the error is not sticky")

    for chunk in chunks:
        try:
            out = dec.feed(chunk)
        except Exception as exc:
            return failed(exc)
        for i, body in enumerate(out):
            if isinstance(body, FramingFailure):
                if i != len(out) - 1:
                    raise InvariantBroken("framing", "a FramingFailure is not last")
                return failed(body.error)
            if not 0 < len(body) <= limit:
                raise InvariantBroken("framing", f"a body of {len(body)} bytes")
            bodies.append(bytes(body))
    return bodies, None, dec.buffered


def envelope_outcome(body: bytes) -> str:
    """``ok``, ``ok, not re-encodable`` or the error code."""
    try:
        msg = decode_message(body)
    except Exception as exc:
        _check_error("envelope", exc, ENVELOPE_CODES)
        return str(exc.code)  # type: ignore[attr-defined]
    try:
        text = encode_message(msg)
    except Exception as exc:
        _check_error("envelope (re-encoding)", exc, frozenset({"bad_message"}))
        return "ok, not re-encodable"
    try:
        again = encode_message(decode_message(text))
    except Exception as exc:
        raise InvariantBroken("envelope", f"a re-encoded message does not decode and re-encode: {describe(exc)}") from exc
    if again != text:
        raise InvariantBroken("envelope", "re-encoding a decoded message is not stable")
    return "ok"


def _item_word(target: str, item: Any) -> str:
    if type(item) is Message:
        return f"msg:{item.message_type.value}"
    if isinstance(item, ProtocolViolation):
        return f"violation:{item.code}"
    if isinstance(item, MessageRefused):
        return f"refused:{item.code}"
    if isinstance(item, HandshakeRefused):
        if not isinstance(item.error, IPCError):
            raise InvariantBroken(target, f"a refusal without a typed error: {item.error!r}")
        # The server's word, relayed as a RemoteError: any code at all.
        return f"handshake-refused:{item.error.code if str(item.error.code) in SPEC_CODES else 'a code of its own'}"
    words = {ConnectRequested: "connect", Connected: "connected", PingReceived: "ping", PongReceived: "pong"}
    for cls, word in words.items():
        if isinstance(item, cls):
            return word
    raise InvariantBroken(target, f"receive_frame returned {item!r}")


def _pump(target: str, proto: Any, chunks: list[bytes], on_item: Callable[[Any], None]) -> list[str]:
    """Feed ``chunks`` (then one empty read) as a pump does; the words of what came out."""
    words: list[str] = []
    for chunk in [*chunks, b""]:
        if proto.state not in _LIVE:
            break
        try:
            frames = proto.receive_data(chunk, 0.0)
            for body in frames:
                if proto.state not in _LIVE:
                    break
                item = proto.receive_frame(body)
                words.append(_item_word(target, item))
                on_item(item)
        except InvariantBroken:
            raise
        except Exception as exc:
            raise InvariantBroken(target, f"the protocol raised {describe(exc)}") from exc
    violation = proto.violation
    if violation is not None:
        if str(violation.code) not in SPEC_CODES:
            raise InvariantBroken(target, f"violation with an undocumented code {violation.code!r}")
        if words[-1:] != [f"violation:{violation.code}"]:
            words.append(f"violation:{violation.code}")
    words.append(f"state:{proto.state.value}")
    return words


def _error_code(msg: Message, legacy: bool) -> str | None:
    """An error response's code; a version-1 peer gets it in the payload (§10)."""
    if legacy:
        error = msg.payload.get("error") if isinstance(msg.payload, dict) else None
        return error.get("code") if isinstance(error, dict) else None
    return msg.error.code if msg.error is not None else None


def server_outcome(chunks: list[bytes], limit: int, token: str | None) -> list[str]:
    proto = ServerProtocol(max_frame_size=limit, token=token, heartbeat_interval_s=15.0, server_name="fuzz")

    def on_item(item: Any) -> None:
        if isinstance(item, ConnectRequested):
            proto.accept("c1", now=0.0)

    words = _pump("server", proto, chunks, on_item)
    sent = []
    for frame in proto.data_to_send():
        try:
            sent.append(decode_message(frame[4:]))
        except ProtocolError as exc:
            raise InvariantBroken("server", f"it sent a frame that does not decode: {describe(exc)}") from exc
    violation = proto.violation
    # A peer speaking TLS gets no error frame: it could not read one (§1.3).
    tls = not sent and violation is not None and "TLS" in violation.text
    if proto.state is ProtocolState.ERROR and not tls:
        if violation is None or not sent or _error_code(sent[-1], proto.legacy) != str(violation.code):
            raise InvariantBroken("server", "a violation without its error frame last")
    return [*words, f"sent:{len(sent)}"]


def client_outcome(chunks: list[bytes], limit: int) -> list[str]:
    proto = ClientProtocol("fuzz", "c1", client="fuzz", max_frame_size=limit)
    proto.connect()
    proto.data_to_send()
    return _pump("client", proto, chunks, lambda item: None)


def _connect_body(rng: random.Random, token: str | None) -> bytes:
    payload: dict[str, Any] = {"action": "connect", "connection_id": "c1"}
    if rng.random() < 0.85:  # else a version-1 connect (§10)
        payload.update(protocol=2, client="fuzz")
        if token is not None and rng.random() < 0.9:
            payload["token"] = token if rng.random() < 0.8 else "wrong"
    return dumps({"message_id": "h1", "app_id": "fuzz", "channel_id": "system", "message_type": "request", "payload": payload}).encode()


def _framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _same(target: str, outcomes: list[tuple[str, Any]]) -> Any:
    (first_name, first), *others = outcomes
    for name, other in others:
        if other != first:
            raise InvariantBroken(target, f"split {first_name}/{name} changed the outcome: {str(first)[:300]} vs {str(other)[:300]}")
    return first


def check_stream(rng: random.Random, core: Stream, limit: int, *, bytewise: bool) -> dict[str, Any]:
    """Every target on one stream, under every split; returns the outcome."""
    ways = splits(rng, core.data, bytewise=bytewise)
    bodies, error, _ = _same("framing", [(name, framing_outcome(chunks, limit)) for name, chunks in ways])
    verdicts = [envelope_outcome(body) for body in bodies]
    token = TOKEN if rng.random() < 0.2 else None
    server_data = (_framed(_connect_body(rng, token)) if rng.random() < 0.85 else b"") + core.data
    server = _same("server", [(n, server_outcome(c, limit, token)) for n, c in splits(rng, server_data, bytewise=bytewise)])
    client_data = (_framed(dumps(connect_reply(rng)).encode()) if rng.random() < 0.85 else b"") + core.data
    client = _same("client", [(n, client_outcome(c, limit)) for n, c in splits(rng, client_data, bytewise=bytewise)])
    return {"framing": error or "ok", "bodies": len(bodies), "envelope": verdicts, "server": server, "client": client}


class DecoderFuzz:
    """The Python decoders' part of the run: counts, and the first breaches."""

    KEPT_BREACHES = 5
    BYTEWISE_EVERY = 8  # streams fed byte by byte too (the slowest split)

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.streams = 0
        self.frames = 0
        self.bytewise_streams = 0
        self.kinds: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {t: Counter() for t in ("framing", "envelope", "server", "client")}
        self.bodies = 0
        self.items = {"server": 0, "client": 0}
        self.breaches = 0
        self.examples: list[dict[str, Any]] = []

    def step(self) -> None:
        rng = self.rng
        limit = rng.choice(LIMITS)
        core = random_stream(rng, max_frame_size=limit)
        index = self.streams
        self.streams += 1
        self.frames += core.frames
        self.kinds.update(core.kinds)
        bytewise = index % self.BYTEWISE_EVERY == 0
        self.bytewise_streams += bytewise
        try:
            out = check_stream(rng, core, limit, bytewise=bytewise)
        except InvariantBroken as exc:
            self._breach(index, core, str(exc))
            return
        except Exception as exc:  # the harness itself: reported, never hidden
            self._breach(index, core, f"harness: {describe(exc)}")
            return
        self.outcomes["framing"][out["framing"]] += 1
        self.bodies += out["bodies"]
        self.outcomes["envelope"].update(out["envelope"])
        for role in ("server", "client"):
            words = out[role]
            self.outcomes[role].update(w for w in words if not w.startswith("sent:"))
            self.items[role] += sum(1 for w in words if not w.startswith(("state:", "sent:")))

    def _breach(self, index: int, core: Stream, what: str) -> None:
        self.breaches += 1
        if len(self.examples) < self.KEPT_BREACHES:
            self.examples.append({"seed": self.seed, "stream": index, "kinds": core.kinds, "error": what, "hex": core.data[:4096].hex()})

    def report(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "frames": self.frames,
            "bytewise_streams": self.bytewise_streams,
            "frames_by_kind": dict(self.kinds),
            "framing": {"frames_fed": self.frames, "bodies_read": self.bodies, "outcomes": dict(self.outcomes["framing"])},
            "envelope": {"bodies_fed": self.bodies, "outcomes": dict(self.outcomes["envelope"])},
            "server": {"frames_fed": self.frames, "items_read": self.items["server"], "outcomes": dict(self.outcomes["server"])},
            "client": {"frames_fed": self.frames, "items_read": self.items["client"], "outcomes": dict(self.outcomes["client"])},
            "breaches": self.breaches,
            "breach_examples": self.examples,
        }
