"""Length-prefixed framing: ``uint32 big-endian length`` + that many bytes.

The decoder is fed whatever the transport delivers (one byte, half a prefix,
a thousand frames) and returns the complete frame bodies. It never re-copies
the whole buffer per chunk: consumed bytes are dropped lazily, so the work is
linear in the bytes fed. The length limit is checked on the prefix, before any
of the body is buffered (docs/protocol.md, "Framing").
"""

from __future__ import annotations

import struct

from .attachments import BINARY_MARKER, BinaryBytes, BinaryFrame
from .constants import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, MAX_FRAME_LIMIT
from .exceptions import FrameError, FrameTooLarge, ProtocolError
from .frame_buffers import FrameBuffers

__all__ = ["FrameDecoder", "FramingFailure", "encode_frame", "frame_parts", "frame_header", "tls_record", "PEER_SPEAKS_TLS", "ASSEMBLE_FROM_BYTES", "NEVER_ASSEMBLE"]

_from_bytes = int.from_bytes
_prefix_at = struct.Struct(">I").unpack_from  # no slice per frame
# A frame at least this large that a read does not complete is assembled in
# a buffer of its own, which the pump may read into directly (read_buffer);
# NEVER_ASSEMBLE: none is (FrameDecoder.assemble_from).
ASSEMBLE_FROM_BYTES = 64 * 1024
NEVER_ASSEMBLE = MAX_FRAME_LIMIT + 1
# A frame's own buffer grows with what arrives by appending a view of one
# block of zeros, made once (by calloc: its pages are mostly never touched);
# a zeroed ``bytes`` made per step cost ten times the reads' own work on an
# 8 MiB frame (docs/performance.md, "Binary payloads").
_ZEROS_BYTES = 1024 * 1024
_ZEROS = memoryview(bytes(_ZEROS_BYTES))


def _append_zeros(buf: bytearray, n: int) -> None:
    """Lengthen ``buf`` by ``n`` zero bytes; BufferError while a view of it is held."""
    while n > 0:
        step = min(n, _ZEROS_BYTES)
        buf += _ZEROS[:step]
        n -= step


def frame_header(length: int) -> bytes:
    """The 4-byte big-endian prefix for a body of ``length`` bytes."""
    return length.to_bytes(HEADER_SIZE, "big")


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length; one buffer, so it goes out in one
    write. A binary body (§16.2) makes a :class:`BinaryBytes`, so that
    whoever sends it can tell it from a JSON frame (§16.5)."""
    n = len(body)
    if n == 0:
        raise FrameError("a frame body cannot be empty")
    if n > MAX_FRAME_LIMIT:
        raise FrameTooLarge(n, MAX_FRAME_LIMIT)
    if body.__class__ is bytes and body[0]:  # JSON: "{" or whitespace
        return n.to_bytes(HEADER_SIZE, "big") + body
    if isinstance(body, BinaryFrame):
        body = bytes(body)
    if body[0] == BINARY_MARKER:
        return BinaryBytes(n.to_bytes(HEADER_SIZE, "big") + body)
    return n.to_bytes(HEADER_SIZE, "big") + bytes(body)


# Length prefixes made once: a server relays frames of a few hundred lengths
# over and over, and a dict lookup is a fifth of ``int.to_bytes``'s cost.
_PREFIXES: dict[int, bytes] = {}
_PREFIXES_KEPT = 4096


def _prefix(n: int) -> bytes:
    prefix = n.to_bytes(HEADER_SIZE, "big")
    if len(_PREFIXES) < _PREFIXES_KEPT:
        _PREFIXES[n] = prefix
    return prefix


def frame_parts(body: bytes | BinaryFrame) -> bytes | BinaryFrame:
    """:func:`encode_frame` for senders that write a binary frame's buffers
    as they are: a binary body, built or read from a peer, is never copied
    (§16.4)."""
    if body.__class__ is bytes and body and body[0]:  # JSON
        prefix = _PREFIXES.get(len(body))
        if prefix is not None:
            return prefix + body
        if len(body) <= MAX_FRAME_LIMIT:
            return _prefix(len(body)) + body
        return encode_frame(body)  # too large: refused in its words
    if isinstance(body, BinaryFrame):
        return body.with_prefix()
    if len(body) and body[0] == BINARY_MARKER:
        return BinaryFrame.received(body)
    return encode_frame(body)


# A TLS record starts with its content type, then the version 3.x: a
# ClientHello is 0x16 0x03 0x01, a TLS server's alert 0x15 0x03 0x0N (§1.3).
_TLS_RECORDS = {0x15: "a TLS alert", 0x16: "a TLS handshake"}
PEER_SPEAKS_TLS = "the peer speaks TLS and this side does not"


def tls_record(head: bytes) -> str | None:
    """What a stream's first three bytes are when they are a TLS record
    header ("a TLS handshake", "a TLS alert"), else None (§1.3): read as a
    length prefix, they would be a frame of some 350 MB."""
    kind = _TLS_RECORDS.get(head[0])
    return kind if kind is not None and head[1] == 3 and head[2] <= 4 else None


class FramingFailure(bytes):
    """What :meth:`FrameDecoder.feed` returns last when a bad length prefix
    follows complete frames in one chunk: the frames before it are the
    peer's, and are read first, whatever way TCP split the bytes (§1.4);
    then this, which decodes as nothing, fails the connection with
    ``error``."""

    error: ProtocolError

    @classmethod
    def of(cls, error: ProtocolError) -> FramingFailure:
        failure = cls()
        failure.error = error
        return failure


class FrameDecoder:
    """Incremental frame decoder.

    ``feed(data)`` returns the list of complete frame bodies. A bad length
    prefix raises at once when no frame came before it in the chunk, else
    the frames are returned first, ending with a :class:`FramingFailure`.
    The error is sticky: every later ``feed`` raises it, because a byte
    stream cannot be resynchronised. A stream whose first bytes are a TLS
    record raises ``FrameError`` naming TLS and sets ``tls`` (§1.3).

    Args:
        max_frame_size: largest body accepted, in bytes; ``None`` means the
            protocol maximum (2**32 - 1).
    """

    __slots__ = ("max_frame_size", "_buf", "_pos", "_need", "_error", "_at_start", "tls", "_frame", "_filled", "buffers", "assemble_from")

    def __init__(self, max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = MAX_FRAME_LIMIT if max_frame_size is None else max_frame_size
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed bytes in _buf
        self._need = 0  # body length of the frame being assembled, 0 = reading a prefix
        self._error: ProtocolError | None = None
        self._at_start = True  # the stream's first bytes are still to be checked for TLS
        self.tls = False  # they were a TLS record: the peer speaks TLS (§1.3)
        self._frame: bytearray | None = None  # a large frame's body, being filled
        self._filled = 0
        # Where large frames' buffers come from and go back to, when the pump
        # keeps some (frame_buffers); None: a new one for each.
        self.buffers: FrameBuffers | None = None
        # A peer not yet trusted gets no buffer of its own (NEVER_ASSEMBLE):
        # its frame is held as the bytes arrive, the way it sent them.
        self.assemble_from = ASSEMBLE_FROM_BYTES

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos + (HEADER_SIZE if self._need else 0) + self._filled

    def completes(self, waiting: int, head: bytes) -> bool:
        """Whether ``waiting`` more bytes, of which ``head`` are the first
        (up to 4), would complete the frame being read (or the next one):
        a server's test of a socket's unread bytes, peeked, not consumed."""
        if self._frame is not None:
            return waiting >= self._need - self._filled
        held = len(self._buf) - self._pos
        if self._need:
            return waiting >= self._need - held
        missing = HEADER_SIZE - held  # of the length prefix
        prefix = bytes(self._buf[self._pos :]) + head[:missing]
        return len(prefix) == HEADER_SIZE and 0 < int.from_bytes(prefix, "big") <= waiting - missing

    def release(self) -> None:
        """The stream is gone: drop what was buffered, a frame half read
        included (up to twice what arrived), at once rather than whenever
        the decoder itself is freed."""
        self._buf = bytearray()
        self._pos = self._need = self._filled = 0
        self._frame = None

    def read_buffer(self, default: memoryview) -> memoryview:
        """Where the next read should land: the rest of a large frame's own
        buffer while one is assembled (the bytes are then read in place, not
        copied: feed a slice of this view), else ``default``."""
        frame = self._frame
        if frame is None:
            return default
        if self._filled == len(frame):
            frame = self._grow(self._filled + 1)
        return memoryview(frame)[self._filled :]

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._error is not None:
            raise self._error
        if self._need > self.max_frame_size:
            # The limit was lowered (by a handshake) since this frame's
            # prefix was read: it holds all the same, whatever the split (§1).
            self._check_length(self._need, self.max_frame_size)
        if self._at_start:
            self._check_start(data)
        frames: list[bytes] = []
        if self._frame is not None:  # a large frame, in its own buffer
            data = self._fill(data, frames)
            if not data:
                return frames
        buf = self._buf
        try:
            pending = len(buf) - self._pos
            if pending == 0 and self._need == 0:
                # Nothing pending: parse straight from the chunk, keep only its tail.
                self._parse_chunk(bytes(data), frames)
            elif pending + HEADER_SIZE <= len(data):
                # A short tail pending (the usual case: reads end mid-frame):
                # prepend it, with its prefix once consumed, and parse the
                # whole from the chunk; every byte is still copied a bounded
                # number of times, the tail being no longer than the chunk.
                head = bytes(buf[self._pos :]) if self._need == 0 else frame_header(self._need) + buf[self._pos :]
                self._buf, self._pos, self._need = bytearray(), 0, 0
                self._parse_chunk(head + data, frames)
            else:
                buf += data
                try:
                    self._parse_buffer(frames)
                finally:
                    self._compact()
        except ProtocolError as exc:
            if not frames:
                raise
            frames.append(FramingFailure.of(exc))
        return frames

    def _parse_chunk(self, data: bytes, frames: list[bytes]) -> None:
        pos = 0
        end = len(data)
        limit = self.max_frame_size
        while end - pos >= HEADER_SIZE:
            n = _prefix_at(data, pos)[0]
            if not 0 < n <= limit:  # the call only for a bad one: this runs per frame
                self._check_length(n, limit)
            stop = pos + HEADER_SIZE + n
            if stop > end:
                if n >= self.assemble_from:
                    self._assemble(n, data[pos + HEADER_SIZE :])
                    return
                break
            frames.append(data[pos + HEADER_SIZE : stop])
            pos = stop
        if pos < end:
            self._buf = bytearray(data[pos:])
            self._pos = 0
            self._parse_buffer(frames)

    def _parse_buffer(self, frames: list[bytes]) -> None:
        buf = self._buf
        pos = self._pos
        end = len(buf)
        limit = self.max_frame_size
        try:
            while True:
                if self._need == 0:
                    if end - pos < HEADER_SIZE:
                        return
                    n = _from_bytes(buf[pos : pos + HEADER_SIZE], "big")
                    if not 0 < n <= limit:
                        self._check_length(n, limit)
                    pos += HEADER_SIZE
                    self._need = n
                if end - pos < self._need:
                    if self._need >= self.assemble_from:
                        self._assemble(self._need, buf[pos:end])
                        pos = end
                    return
                stop = pos + self._need
                frames.append(bytes(buf[pos:stop]))
                pos = stop
                self._need = 0
        finally:
            self._pos = pos

    def _assemble(self, n: int, part: bytes | bytearray) -> None:
        """Go on with a frame of ``n`` bytes in a buffer of its own, ``part``
        its start: a kept one when one is free (``buffers``), else one that
        grows as the bytes arrive (:meth:`_grow`), so that a length prefix
        makes us hold what the peer sent, not what it announced."""
        frame = None if self.buffers is None else self.buffers.reuse(n)
        if frame is None:
            frame = bytearray(min(n, max(ASSEMBLE_FROM_BYTES, 2 * len(part))))
        frame[: len(part)] = part
        self._frame, self._filled, self._need = frame, len(part), n

    def _grow(self, at_least: int) -> bytearray:
        """The frame's buffer, made to hold at least ``at_least`` bytes: twice
        as long, at most the frame's size (at most twice what arrived). In
        place, unless a view of it is still held: then a new one."""
        frame = self._frame
        assert frame is not None
        size = min(self._need, max(at_least, 2 * len(frame)))
        try:
            _append_zeros(frame, size - len(frame))
        except BufferError:
            grown = bytearray(size)
            grown[: self._filled] = memoryview(frame)[: self._filled]
            self._frame = frame = grown
        return frame

    def _fill(self, data: bytes | bytearray | memoryview, frames: list[bytes]) -> bytes | bytearray | memoryview:
        """Add ``data`` to the large frame (read in place: only counted);
        returns what follows the frame in ``data``."""
        frame = self._frame
        assert frame is not None
        filled = self._filled
        rest: bytes | bytearray | memoryview = b""
        if isinstance(data, memoryview) and data.obj is frame:  # read into read_buffer()'s view
            taken = len(data)
        else:
            taken = min(len(data), self._need - filled)
            if filled + taken > len(frame):
                frame = self._grow(filled + taken)
            frame[filled : filled + taken] = data[:taken]
            rest = data[taken:]
        self._filled = filled = filled + taken
        if filled == self._need:
            self._frame, self._filled, self._need = None, 0, 0
            if self.buffers is not None:
                self.buffers.keep(frame)
            # A binary body goes on as the buffer it was read into, its
            # attachments views of it (§16.4): no copy of megabytes here. No
            # one writes to it again; every reader of a body takes a bytearray.
            frames.append(frame if frame[0] == BINARY_MARKER else bytes(frame))  # type: ignore[arg-type]
        return rest

    def _check_start(self, data: bytes | bytearray | memoryview) -> None:
        """§1.3: the stream's first three bytes, once they are in, are no TLS record."""
        head = bytes(self._buf[self._pos : self._pos + 3]) + bytes(data[:3])  # nothing consumed yet
        if len(head) < 3:
            return
        self._at_start = False
        kind = tls_record(head)
        if kind is not None:
            self.tls = True
            self._error = FrameError(f"{kind} on a plaintext port: {PEER_SPEAKS_TLS}")
            raise self._error

    def _check_length(self, n: int, limit: int) -> None:
        if n == 0:
            self._error = FrameError("zero-length frame")
            raise self._error
        if n > limit:
            self._error = FrameTooLarge(n, limit)
            raise self._error

    def _compact(self) -> None:
        # Drop consumed bytes only when they are at least half the buffer, so
        # each byte is moved a bounded number of times (amortised linear).
        pos = self._pos
        if pos == len(self._buf):
            self._buf = bytearray()
            self._pos = 0
        elif pos and pos * 2 >= len(self._buf):
            del self._buf[:pos]
            self._pos = 0
