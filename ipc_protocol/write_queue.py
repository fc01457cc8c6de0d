"""Writes that wait for the transport, in order, and large binary frames
written a window at a time (docs/protocol.md §16.4).

asyncio's transport on Python 3.11 copies whatever the socket does not take
at once into a buffer of its own: for a large frame, megabytes of fresh
memory (page faults included) per frame. Written a window at a time, each
window only once that buffer is empty, it copies at most the part of one
window the socket left. While a large frame goes out, the transport's
limits are 1 and 0, so it says ``pause_writing`` as soon as it holds what
the socket left and ``resume_writing`` once it holds nothing; frames
written meanwhile wait here, behind it. Not 0 and 0: a TLS transport
(asyncio's and uvloop's) pauses when what it holds reaches its high-water
mark rather than passes it, so at 0 it paused at once, holding nothing,
and never resumed. The server's slow-consumer backlog
(``ipc_server.outbound``) and the Python client's connection both write
through a :class:`WriteQueue`.
uvloop's transports and Node's sockets keep references instead of copying:
there, windows cost a few more writes and nothing else.

Sans-I/O apart from :meth:`WriteQueue.resume`, which writes to the
transport it is given.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

__all__ = ["WriteQueue", "FrameWindows", "WINDOW_BYTES"]

# A binary frame at least this large is written a window at a time, each
# into an empty transport buffer (``FrameWindows``).
WINDOW_BYTES = 1024 * 1024


class _Writable(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...


class _Limited(_Writable, Protocol):
    def get_write_buffer_limits(self) -> tuple[int, int]: ...
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...


class FrameWindows:
    """What is left to write of a large binary frame, its buffers as they
    are. ``begun``: a window went out, so the rest must follow before any
    other frame."""

    __slots__ = ("views", "nbytes", "begun")

    def __init__(self, parts: tuple[bytes | bytearray | memoryview, ...] | list[bytes | bytearray | memoryview]) -> None:
        self.views = deque(memoryview(part).cast("B") for part in parts if len(part))
        self.nbytes = sum(view.nbytes for view in self.views)
        self.begun = False

    def __len__(self) -> int:
        return self.nbytes

    def write(self, transport: _Writable, queue: WriteQueue) -> bool:
        """Write windows until the transport pauses; True once all are written."""
        views = self.views
        while views and not queue.paused:
            view = views[0]
            if view.nbytes > WINDOW_BYTES:
                window, views[0] = view[:WINDOW_BYTES], view[WINDOW_BYTES:]
            else:
                window = views.popleft()
            self.nbytes -= window.nbytes
            queue.nbytes -= window.nbytes
            self.begun = True
            transport.write(window)
        return not views

    def rest(self) -> list[memoryview]:
        """What is left, for a peer cut mid-frame: the frame ends before the error frame does."""
        views, self.views, self.nbytes = list(self.views), deque(), 0
        return views


class WriteQueue:
    """A connection's frames waiting for its transport, in order.

    ``paused``: the transport is over its high-water mark (it said
    ``pause_writing``; the owner sets this); ``windowed``: the transport's
    limits are at their lowest while a large frame goes out a window at a time
    (``FrameWindows``), its own limits kept in ``limits`` meanwhile."""

    __slots__ = ("chunks", "nbytes", "paused", "windowed", "limits")

    def __init__(self) -> None:
        self.chunks: deque[bytes | FrameWindows] = deque()
        self.nbytes = 0
        self.paused = True
        self.windowed = False
        self.limits: tuple[int, int] = (0, 0)  # the transport's (low, high), while windowed

    def hold(self, data: bytes | FrameWindows) -> None:
        """Keep ``data`` (whole frames) until the transport drains."""
        self.chunks.append(data)
        self.nbytes += len(data)

    def resume(self, transport: _Limited) -> bool:
        """The transport drained: write what is held until it pauses again
        (its ``pause_writing`` sets ``paused`` from inside ``write``).
        Returns True once nothing is held and the transport is not paused."""
        self.paused = False
        chunks = self.chunks
        while chunks and not self.paused:
            data = chunks[0]
            if data.__class__ is FrameWindows:
                if not self.windowed:
                    self.window(transport)
                if not data.write(transport, self):
                    break
                chunks.popleft()
                continue
            if self.windowed:
                self.unwindow(transport)
                if self.paused:
                    break
            chunks.popleft()
            self.nbytes -= len(data)
            transport.write(data)  # type: ignore[arg-type]
        if self.windowed and not (chunks and chunks[0].__class__ is FrameWindows):
            self.unwindow(transport)
        return not chunks and not self.paused

    def window(self, transport: _Limited) -> None:
        """The lowest limits that pause and resume every transport while a
        large frame goes out (its own kept): a plain transport pauses once
        it holds more than a byte, a TLS one once it holds any (module
        docstring)."""
        self.limits = transport.get_write_buffer_limits()
        self.windowed = True
        transport.set_write_buffer_limits(high=1, low=0)

    def unwindow(self, transport: _Limited) -> None:
        """The transport's own limits again (it may pause at once: it holds more than they allow)."""
        if self.windowed:
            self.windowed = False
            low, high = self.limits
            transport.set_write_buffer_limits(high=high, low=low)

    def rest(self) -> list[bytes | memoryview]:
        """Everything held, in order, emptied out (for a close: the transport
        writes it before it closes)."""
        out: list[bytes | memoryview] = []
        for chunk in self.chunks:
            out.extend(chunk.rest() if isinstance(chunk, FrameWindows) else (chunk,))
        self.chunks.clear()
        self.nbytes = 0
        return out

    def begun_rest(self) -> list[memoryview]:
        """The rest of a frame that has begun to go out, for a cut (§12.2)."""
        head = self.chunks[0] if self.chunks else None
        return head.rest() if isinstance(head, FrameWindows) and head.begun else []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.nbytes} bytes in {len(self.chunks)} writes{' paused' if self.paused else ''}>"
