"""Hostile connections for the live fuzz run (bench/fuzz.py): raw sockets
that send a live server random and mutated frames (bench/_fuzz_frames.py),
garbage before any handshake, silence, and bursts past the connection
limit, reconnecting as the server closes them. A reader decodes everything
the server sends with the Python core's decoder: each frame must decode,
each error code must be documented (interop-tests/spec/error_codes.json),
and every batch must be answered (a ping after it) or the connection
closed, within a bound (never a hang)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from _fuzz_frames import GARBAGE, dumps, mutated_body, random_envelope, random_string

from ipc_protocol import FrameDecoder, decode_message
from ipc_protocol.exceptions import ProtocolError

__all__ = ["HostileCounts", "hostile_connection", "silent_sockets", "burst"]

APPS = ["fuzz-0", "fuzz-1", "fuzz-2", "fuzz-3"]  # shared, so hostile peers serve and subscribe for each other
HOSTILITY = [0.0, 0.002, 0.02, 0.1, 0.3]  # a connection's share of mutated frames
ANSWER_TIMEOUT_S = 15.0  # a batch's ping answered, or the connection closed, within this
KEPT_EXAMPLES = 5


class HostileCounts:
    """What the hostile side sent and saw."""

    def __init__(self) -> None:
        self.connections = 0
        self.connect_errors = 0
        self.handshakes = 0
        self.frames_sent = 0  # hostile frames: valid, mutated, garbage (no handshakes, no pings)
        self.mutated_sent = 0
        self.garbage_sent = 0
        self.batches_answered = 0
        self.frames_received = 0
        self.codes_received: Counter[str] = Counter()
        self.ends: Counter[str] = Counter()  # how each connection ended
        self.refused: Counter[str] = Counter()  # burst connections the server did not take
        self.accepted_in_bursts = 0
        self.anomalies: Counter[str] = Counter()  # stalls, undecodable frames, undocumented codes
        self.examples: list[str] = []

    def anomaly(self, kind: str, detail: str) -> None:
        self.anomalies[kind] += 1
        if len(self.examples) < KEPT_EXAMPLES:
            self.examples.append(f"{kind}: {detail[:400]}")

    def report(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not isinstance(v, Counter)}
        out.update({k: dict(v) for k, v in vars(self).items() if isinstance(v, Counter)})
        return out


class Peer:
    """One socket, and the task that reads and checks all the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: HostileCounts, codes: frozenset[str]) -> None:
        self.reader, self.writer, self.counts, self.codes = reader, writer, counts, codes
        self.decoder = FrameDecoder(None)
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.closed = asyncio.Event()  # the server closed (EOF or reset)
        self.last_code: str | None = None
        self.answered: dict[str, str | None] = {}  # reply_to -> the answer's error code, if any
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for body in self.decoder.feed(data):
                    self._frame(body)
        except ProtocolError as exc:
            self.counts.anomaly("undecodable stream from the server", str(exc))
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    def _frame(self, body: bytes) -> None:
        try:
            msg = decode_message(body)
        except ProtocolError as exc:
            self.counts.anomaly("undecodable frame from the server", f"{exc}: {bytes(body[:200])!r}")
            return
        self.counts.frames_received += 1
        if msg.message_type.value != "response":
            return  # relayed as sent, whatever it carries (§5.3, §7.3): no answer of the server's
        error: Any = msg.error.code if msg.error is not None else None
        if error is None and isinstance(msg.payload, dict) and isinstance(msg.payload.get("error"), dict):
            error = msg.payload["error"].get("code")  # a version-1 peer's error (§10)
        if error is not None:
            self.counts.codes_received[str(error)] += 1
            self.last_code = str(error)
            if error not in self.codes:
                self.counts.anomaly("undocumented code", f"{error!r} in {bytes(body[:300])!r}")
        if msg.reply_to is not None:
            self.answered[msg.reply_to] = None if error is None else str(error)
            fut = self.waiting.pop(msg.reply_to, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def answer_or_close(self, message_id: str, timeout: float = ANSWER_TIMEOUT_S) -> str:
        """``answered``, ``closed`` (by the server) or ``stalled``."""
        if message_id in self.answered:
            return "answered"
        fut = self.waiting[message_id] = asyncio.get_running_loop().create_future()
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({fut, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if fut.done():
            return "answered"
        return "closed" if self.closed.is_set() else "stalled"

    def write(self, data: bytes) -> bool:
        if self.closed.is_set() or self.writer.is_closing():
            return False
        self.writer.write(data)
        return True

    async def end(self, how: str) -> None:
        """Close our side (``close``, ``abort``: a reset) and wait for the reader."""
        if how == "abort":
            self.writer.transport.abort()
        else:
            self.writer.close()
        try:
            await asyncio.wait_for(self.task, 5.0)
        except asyncio.TimeoutError:
            self.task.cancel()
            self.counts.anomaly("stalled", "the server did not close after we did")


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _ping(app: str, n: int) -> tuple[str, bytes]:
    mid = f"mark-{n}"
    return mid, _frame(dumps({"message_id": mid, "app_id": app, "channel_id": "system", "message_type": "request", "payload": {"action": "ping"}}).encode())


def _connect(rng: random.Random, app: str, n: int) -> tuple[str, bytes]:
    mid = f"hello-{n}"
    payload: dict[str, Any] = {"action": "connect", "connection_id": f"fuzz-{rng.randrange(50)}"}  # ids collide on purpose
    if rng.random() < 0.9:  # else version 1 (§10)
        payload.update(protocol=2, client=random_string(rng, 8))
    return mid, _frame(dumps({"message_id": mid, "app_id": app, "channel_id": "system", "message_type": "request", "payload": payload}).encode())


def _hostile_frame(rng: random.Random, app: str, hostility: float, counts: HostileCounts) -> bytes:
    if rng.random() < hostility:
        counts.mutated_sent += 1
        _, body = mutated_body(rng, app)
        p = rng.random()
        if p < 0.05:
            return b"\x00\x00\x00\x00" + body
        if p < 0.1:
            return rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x01\x00\x00\x01"]) + body
        return _frame(body)
    msg = random_envelope(rng, app, stray=0.003)
    if msg["message_type"] in ("subscribe", "unsubscribe") and rng.random() < 0.3:
        msg["payload"] = {"serve": True}  # a responder registration (§7)
    return _frame(dumps(msg).encode())


async def _open(port: int, counts: HostileCounts, codes: frozenset[str]) -> Peer | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10.0)
    except (OSError, asyncio.TimeoutError):
        counts.connect_errors += 1
        return None
    counts.connections += 1
    return Peer(reader, writer, counts, codes)


async def hostile_connection(rng: random.Random, port: int, counts: HostileCounts, codes: frozenset[str], stop: asyncio.Event, serial: int) -> None:
    """One hostile connection, start to end."""
    peer = await _open(port, counts, codes)
    if peer is None:
        return
    ending = "close"
    try:
        if rng.random() < 0.06:
            ending = await _garbage_first(rng, peer, counts)
        else:
            ending = await _session(rng, peer, counts, stop, serial)
    except (ConnectionError, OSError):
        pass
    closed_by_server = peer.closed.is_set()
    await peer.end("abort" if ending == "abort" else "close")
    if closed_by_server and ending == "tls":
        # A TLS record where a frame should be: no error frame, the peer could not read it (§1.3).
        counts.ends[f"TLS bytes, closed by the server: {peer.last_code or 'no error frame'}"] += 1
    elif closed_by_server:
        counts.ends[f"closed by the server: {peer.last_code or 'no error frame'}"] += 1
    else:
        counts.ends[f"closed by us ({ending})"] += 1


async def _garbage_first(rng: random.Random, peer: Peer, counts: HostileCounts) -> str:
    """Bytes that are no connect: the server answers an error frame and
    closes, or (an unfinished frame) closes at its handshake timeout."""
    choice = rng.random()
    if choice < 0.4:
        data = rng.choice(GARBAGE) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 64))
    elif choice < 0.7:
        _, body = mutated_body(rng, rng.choice(APPS))
        data = _frame(body)
    else:
        data = _frame(dumps(random_envelope(rng, rng.choice(APPS))).encode())  # a valid frame, but no connect (§3.5)
    peer.write(data)
    counts.frames_sent += 1
    counts.garbage_sent += 1
    await peer.writer.drain()
    try:
        await asyncio.wait_for(peer.closed.wait(), ANSWER_TIMEOUT_S)
    except asyncio.TimeoutError:
        counts.anomaly("stalled", f"{data[:40]!r}... before a connect: neither refused nor timed out")
    return "tls" if data[:1] in (b"\x15", b"\x16") and data[1:2] == b"\x03" else "close"


async def _session(rng: random.Random, peer: Peer, counts: HostileCounts, stop: asyncio.Event, serial: int) -> str:
    """A handshake, then batches of frames, each followed by a ping."""
    app = rng.choice(APPS)
    hello_id, hello = _connect(rng, app, serial)
    peer.write(hello)
    await peer.writer.drain()
    outcome = await peer.answer_or_close(hello_id)
    if outcome == "stalled":
        counts.anomaly("stalled", "no answer to a connect")
    if outcome != "answered" or peer.answered[hello_id] is not None:
        return "close"
    counts.handshakes += 1
    hostility = rng.choice(HOSTILITY)
    for batch in range(rng.randint(1, 30)):
        if stop.is_set():
            break
        n = rng.randint(1, 50)
        frames = [_hostile_frame(rng, app, hostility, counts) for _ in range(n)]
        mark_id, mark = _ping(app, serial * 100 + batch)
        if not peer.write(b"".join(frames) + mark):
            break
        counts.frames_sent += n
        try:
            await peer.writer.drain()
        except (ConnectionError, OSError):
            break
        outcome = await peer.answer_or_close(mark_id)
        if outcome == "stalled":
            counts.anomaly("stalled", f"a batch of {n} frames neither answered nor closed within {ANSWER_TIMEOUT_S} s")
            return "abort"
        if outcome == "closed":
            return "close"
        counts.batches_answered += 1
    ending = rng.random()
    if ending < 0.1:  # leave in the middle of a frame
        peer.write(_frame(dumps(random_envelope(rng, app)).encode())[: rng.randint(1, 20)])
        return "close"
    return "abort" if ending < 0.4 else "close"


async def silent_sockets(port: int, counts: HostileCounts, codes: frozenset[str], handshake_timeout_s: float) -> None:
    """Two sockets that never finish a connect (one sends 2 bytes of a
    prefix): the server must close them at its handshake timeout."""

    async def one(data: bytes) -> None:
        peer = await _open(port, counts, codes)
        if peer is None:
            return
        if data:
            peer.write(data)
        try:
            await asyncio.wait_for(peer.closed.wait(), handshake_timeout_s + 5.0)
            counts.ends[f"silent, closed by the server: {peer.last_code or 'no error frame'}"] += 1
        except asyncio.TimeoutError:
            counts.anomaly("stalled", f"a silent socket still open {handshake_timeout_s + 5.0} s later")
        await peer.end("close")

    await asyncio.gather(one(b""), one(b"\x00\x00"))


async def burst(rng: random.Random, port: int, counts: HostileCounts, codes: frozenset[str], size: int, serial: int) -> None:
    """``size`` connects at once, past the server's connection limit: each
    is taken (its connect answered) or refused (closed, with or without an
    error frame), never left hanging."""

    async def one(i: int) -> Peer | None:
        peer = await _open(port, counts, codes)
        if peer is None:
            return None
        hello_id, hello = _connect(rng, rng.choice(APPS), serial * 1000 + i)
        try:
            peer.write(hello)
            await peer.writer.drain()
        except (ConnectionError, OSError):
            pass
        outcome = await peer.answer_or_close(hello_id)
        if outcome == "answered" and peer.answered[hello_id] is None:
            counts.accepted_in_bursts += 1
        elif outcome != "stalled":
            counts.refused[peer.last_code or "closed without an error frame"] += 1
        else:
            counts.anomaly("stalled", "a connect in a burst neither answered nor closed")
        return peer

    peers = await asyncio.gather(*(one(i) for i in range(size)))
    await asyncio.gather(*(p.end("close") for p in peers if p is not None))
