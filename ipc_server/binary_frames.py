"""Binary frames on a server connection (docs/protocol.md §16.4, §16.5).

A frame whose body is binary reaches ``ServerConnection.send_frame`` as a
:class:`~ipc_protocol.attachments.BinaryFrame` (the buffers it is written
from: a relayed frame is its length prefix and the body as it was read; an
encoded one its head and the caller's bytes) or as a
:class:`~ipc_protocol.attachments.BinaryBytes` (one buffer). What the peer
gets depends on its handshake:

- granted ``binary``: the frame as it is. A large one is written from its
  buffers, after the frames queued before it, a window at a time
  (``ipc_protocol.write_queue``), so the attachments are not copied on
  their way to the socket (asyncio's transport would copy what the socket
  does not take at once). A small one is joined and batched with the
  frames around it, as a copy costs less than a write.
- not granted (a version-1 peer, a raw client, a version-2 client that did
  not ask): the same message as a JSON frame with each attachment as
  ``{"$base64": ...}``, made once per frame and form however many such
  peers it goes to, and held to the peer's frame limit like any frame
  (§12.3). ``attachments_downgraded`` counts the attachments sent so.

A mixin of :class:`~ipc_server.connection.ServerConnection`, as
``flow_control`` is; it uses the connection's own fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ipc_protocol.attachments import BINARY, BinaryFrame, Frame, as_binary
from ipc_protocol.envelope import encode_message_parts
from ipc_protocol.framing import frame_parts

from .outbound import Backlog, FrameWindows

if TYPE_CHECKING:
    import asyncio

    from ipc_protocol.server_protocol import ServerProtocol

    from .stats import ServerStats

__all__ = ["BinaryFrames", "BinaryFrame", "Frame", "JOIN_BELOW_BYTES", "as_binary", "encode_message_parts", "frame_parts"]

# A binary frame smaller than this goes out joined with the frames around it.
JOIN_BELOW_BYTES = 64 * 1024


class BinaryFrames:
    __slots__ = ()

    if TYPE_CHECKING:
        transport: asyncio.Transport | None
        protocol: ServerProtocol
        _stats: ServerStats
        _backlog: Backlog | None
        _send_limit: int
        _ended: bool
        _loop: asyncio.AbstractEventLoop | None
        _flush_handle: asyncio.Handle | None
        frames_out: int
        bytes_out: int

        @property
        def is_open(self) -> bool: ...
        def send_frame(self, frame: Frame, *, at_once: bool = False) -> bool: ...
        def _too_large(self, frame: Any) -> bool: ...
        def _write_pending(self) -> None: ...
        def _flush(self) -> None: ...
        def resume_writing(self) -> None: ...
        def _past_hard(self, backlog: Backlog, size: int) -> bool: ...

    def fits(self, frame: Frame) -> bool:
        """Whether the peer accepts ``frame`` (its limit, §3; ``frame_limit``),
        in the form it would get it (§16.5)."""
        if frame.__class__ is not bytes:
            frame = self._as_sent(as_binary(frame))
        return len(frame) <= self._send_limit

    def _as_sent(self, frame: BinaryFrame) -> Frame:
        """``frame`` as this peer gets it: itself, or the tagged form (§16.5)."""
        protocol = self.protocol
        return frame if BINARY in protocol.features else frame.tagged(protocol.legacy)

    def _send_binary(self, frame: Frame, at_once: bool) -> bool:
        """``send_frame`` for a frame whose body is binary."""
        binary = as_binary(frame)
        sent = self._as_sent(binary)
        if sent.__class__ is bytes:  # the tagged form, a JSON frame like any other
            if not self.send_frame(sent, at_once=at_once):
                return False
            self._stats.attachments_downgraded += binary.count
            return True
        size = len(sent)
        if size > self._send_limit:
            return self._too_large(sent)
        if size < JOIN_BELOW_BYTES:
            return self.send_frame(b"".join(binary.parts), at_once=at_once)
        if self._ended or not self.is_open or self.transport is None:
            return False
        self._write_pending()  # what was queued before it goes first
        stats = self._stats
        stats.messages_out += 1
        stats.bytes_out += size
        self.frames_out += 1  # type: ignore[misc]  # ConnectionFigures' slots (mypy checks a mixin against its own)
        self.bytes_out += size  # type: ignore[misc]
        # A window at a time (outbound.FrameWindows); behind frames already
        # held, it waits its turn, and the slow-consumer limits apply (§12.2).
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = Backlog()  # type: ignore[misc]  # ServerConnection's slot
            backlog.hold(FrameWindows(binary.parts))
            self.resume_writing()
        else:
            backlog.hold(FrameWindows(binary.parts))
            if self._past_hard(backlog, 0):
                return False
        if self._flush_handle is None:  # once this iteration ends: the backlog's check
            self._flush_handle = self._loop.call_soon(self._flush)  # type: ignore[misc,union-attr]
        return True
