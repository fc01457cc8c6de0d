"""Length-prefixed framing: ``uint32 big-endian length`` + that many bytes.

The decoder is fed whatever the transport delivers (one byte, half a prefix,
a thousand frames) and returns the complete frame bodies. It never re-copies
the whole buffer per chunk: consumed bytes are dropped lazily, so the work is
linear in the bytes fed. The length limit is checked on the prefix, before any
of the body is buffered (docs/protocol.md, "Framing").
"""

from __future__ import annotations

from .constants import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, MAX_FRAME_LIMIT
from .exceptions import FrameError, FrameTooLarge, ProtocolError

__all__ = ["FrameDecoder", "FramingFailure", "encode_frame", "frame_header"]

_from_bytes = int.from_bytes


def frame_header(length: int) -> bytes:
    """The 4-byte big-endian prefix for a body of ``length`` bytes."""
    return length.to_bytes(HEADER_SIZE, "big")


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length; one buffer, so it goes out in one write."""
    n = len(body)
    if n == 0:
        raise FrameError("a frame body cannot be empty")
    if n > MAX_FRAME_LIMIT:
        raise FrameTooLarge(n, MAX_FRAME_LIMIT)
    return n.to_bytes(HEADER_SIZE, "big") + body


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
    stream cannot be resynchronised.

    Args:
        max_frame_size: largest body accepted, in bytes; ``None`` means the
            protocol maximum (2**32 - 1).
    """

    __slots__ = ("max_frame_size", "_buf", "_pos", "_need", "_error")

    def __init__(self, max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = MAX_FRAME_LIMIT if max_frame_size is None else max_frame_size
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed bytes in _buf
        self._need = 0  # body length of the frame being assembled, 0 = reading a prefix
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos + (HEADER_SIZE if self._need else 0)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._error is not None:
            raise self._error
        if self._need > self.max_frame_size:
            # The limit was lowered (by a handshake) since this frame's
            # prefix was read: it holds all the same, whatever the split (§1).
            self._check_length(self._need, self.max_frame_size)
        buf = self._buf
        frames: list[bytes] = []
        try:
            if self._pos == len(buf) and self._need == 0:
                # Nothing pending: parse straight from the chunk, keep only its tail.
                self._parse_chunk(bytes(data), frames)
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
            n = _from_bytes(data[pos : pos + HEADER_SIZE], "big")
            self._check_length(n, limit)
            stop = pos + HEADER_SIZE + n
            if stop > end:
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
                    self._check_length(n, limit)
                    pos += HEADER_SIZE
                    self._need = n
                if end - pos < self._need:
                    return
                stop = pos + self._need
                frames.append(bytes(buf[pos:stop]))
                pos = stop
                self._need = 0
        finally:
            self._pos = pos

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
