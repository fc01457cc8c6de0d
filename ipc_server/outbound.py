"""Slow consumers (docs/protocol.md §12): the frames a connection holds for
a peer that reads slower than it is sent to, and when that peer is cut.

A connection hands its transport at most ``OutboundLimits.high_water``
bytes; past that (the transport's ``pause_writing``), frames wait in a
:class:`Backlog`, whole, until the transport drains (``resume_writing``).
Held here rather than in the transport, the cost of a write does not grow
with what is held, and a cut drops whole frames, so the ``slow_consumer``
error frame goes out next, behind no more than the high-water mark, instead
of behind megabytes the peer may never read.

Two limits, the shape of Redis's ``client-output-buffer-limit``:
- hard, ``max_outbound_buffer_bytes`` (64 MiB, nats-server's pending
  limit): more than that held, the peer is cut at once;
- soft, ``outbound_soft_limit_bytes`` for ``outbound_soft_limit_s`` (16 MiB
  for 60 s): held continuously above it that long, the peer is cut. A burst
  that a subscriber catches up with is never cut for it.

Checked once per loop iteration of a connection that writes while backed
up; a connection that is not backed up pays nothing but one attribute test.
Sans-I/O apart from ``Backlog.resume``, which writes to the transport it is given.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Protocol, cast

from .config import ServerConfig

__all__ = ["OutboundLimits", "Backlog", "FrameWindows", "HARD", "SOFT", "WINDOW_BYTES"]

# The limit a cut names (stats, logs, the error frame's text).
HARD = "hard"
SOFT = "soft"

# What the transport may hold before frames wait in the backlog, and where it
# resumes: large enough that a fast reader never waits on our resume, small
# enough that the error frame of a cut is read soon after.
_HIGH_WATER_BYTES = 1024 * 1024
_LOW_WATER_BYTES = 256 * 1024


# A binary frame at least this large is written a window at a time, each
# into an empty transport buffer (``FrameWindows``).
WINDOW_BYTES = 256 * 1024


class _Writable(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...


class _Limited(_Writable, Protocol):
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...


class FrameWindows:
    """What is left to write of a large binary frame (§16.4), its buffers
    as they are. asyncio's transport copies whatever the socket does not
    take at once into a buffer of its own (megabytes of fresh memory for a
    large frame, page faults included); written a window at a time, and
    each window only once that buffer is empty, it copies at most the part
    of one window the socket left. ``begun``: a window went out, so the
    rest must follow before any other frame."""

    __slots__ = ("views", "nbytes", "begun")

    def __init__(self, parts: tuple[bytes | bytearray | memoryview, ...] | list[bytes | bytearray | memoryview]) -> None:
        self.views = deque(memoryview(part).cast("B") for part in parts if len(part))
        self.nbytes = sum(view.nbytes for view in self.views)
        self.begun = False

    def __len__(self) -> int:
        return self.nbytes

    def write(self, transport: _Writable, backlog: Backlog) -> bool:
        """Write windows until the transport pauses; True once all are written."""
        views = self.views
        while views and not backlog.paused:
            view = views[0]
            if view.nbytes > WINDOW_BYTES:
                window, views[0] = view[:WINDOW_BYTES], view[WINDOW_BYTES:]
            else:
                window = views.popleft()
            self.nbytes -= window.nbytes
            backlog.nbytes -= window.nbytes
            self.begun = True
            transport.write(window)
        return not views

    def rest(self) -> list[memoryview]:
        """What is left, for a peer cut mid-frame: the frame ends before the error frame does."""
        views, self.views, self.nbytes = list(self.views), deque(), 0
        return views


class Backlog:
    """A connection's frames waiting for its transport to drain, in order.

    ``paused``: the transport is over its high-water mark (it said
    ``pause_writing``); ``over_soft_since``: when the held bytes last went
    over the soft limit and stayed there (None: they are under it);
    ``windowed``: the transport's limits are at zero while a large frame
    goes out a window at a time (``FrameWindows``), so that it pauses as
    soon as it holds a byte and resumes once it holds none."""

    __slots__ = ("chunks", "nbytes", "paused", "over_soft_since", "windowed")

    def __init__(self) -> None:
        self.chunks: deque[bytes | FrameWindows] = deque()
        self.nbytes = 0
        self.paused = True
        self.over_soft_since: float | None = None
        self.windowed = False

    def hold(self, data: bytes | FrameWindows) -> None:
        """Keep ``data`` (whole frames) until the transport drains."""
        self.chunks.append(data)
        self.nbytes += len(data)

    def resume(self, transport: _Writable, limits: OutboundLimits | None = None) -> bool:
        """The transport drained: write what is held until it pauses again
        (its ``pause_writing`` sets ``paused`` from inside ``write``).
        Returns True once nothing is held and the transport is not paused.
        ``limits``: the connection's, restored after a large frame."""
        self.paused = False
        chunks = self.chunks
        while chunks and not self.paused:
            data = chunks[0]
            if data.__class__ is FrameWindows:
                if not self.windowed and limits is not None:
                    self.windowed = True
                    cast("_Limited", transport).set_write_buffer_limits(high=0, low=0)
                if not data.write(transport, self):
                    break
                chunks.popleft()
                continue
            if self.windowed:
                self.unwindow(transport, limits)
                if self.paused:
                    break
            chunks.popleft()
            self.nbytes -= len(data)
            transport.write(data)  # type: ignore[arg-type]
        if self.windowed and not (chunks and chunks[0].__class__ is FrameWindows):
            self.unwindow(transport, limits)
        return not chunks and not self.paused

    def unwindow(self, transport: _Writable, limits: OutboundLimits | None) -> None:
        """The transport's own limits again (it may pause at once: it holds more than they allow)."""
        if self.windowed and limits is not None:
            self.windowed = False
            cast("_Limited", transport).set_write_buffer_limits(high=limits.high_water, low=limits.low_water)

    def begun_rest(self) -> list[memoryview]:
        """The rest of a frame that has begun to go out, for a cut (§12.2)."""
        head = self.chunks[0] if self.chunks else None
        return head.rest() if isinstance(head, FrameWindows) and head.begun else []

    def __repr__(self) -> str:
        return f"<Backlog {self.nbytes} bytes in {len(self.chunks)} writes{' paused' if self.paused else ''}>"


class OutboundLimits:
    """The server's slow-consumer limits; one object shared by its connections.

    Args:
        hard: cut at once past this many bytes held; None: never.
        soft: cut when held above this many bytes for ``soft_s``; None: never.
        soft_s: how long the soft limit may be exceeded.
    """

    __slots__ = ("hard", "soft", "soft_s", "high_water", "low_water")

    def __init__(self, hard: int | None, soft: int | None, soft_s: float) -> None:
        self.hard = hard
        self.soft = soft
        self.soft_s = soft_s
        # A limit under the default high-water mark lowers it, so the backlog
        # (and its check) starts before the limit is reached.
        high = min([_HIGH_WATER_BYTES, *(limit // 2 for limit in (hard, soft) if limit is not None)])
        self.high_water = max(high, 1)
        self.low_water = min(_LOW_WATER_BYTES, self.high_water // 4)

    @staticmethod
    def of(config: ServerConfig) -> OutboundLimits:
        """The limits of ``config``'s settings, one object for all its connections."""
        return _limits(config.max_outbound_buffer_bytes, config.outbound_soft_limit_bytes, config.outbound_soft_limit_s)

    def exceeded(self, backlog: Backlog, buffered: int, now: float) -> str | None:
        """Which limit a connection holding ``buffered`` bytes (its backlog
        and its transport's buffer) has passed at ``now``: ``HARD``, ``SOFT``
        or None. Keeps the backlog's soft-limit clock."""
        if self.hard is not None and buffered > self.hard:
            return HARD
        soft = self.soft
        if soft is None:
            return None
        if buffered <= soft:
            backlog.over_soft_since = None
            return None
        since = backlog.over_soft_since
        if since is None:
            since = backlog.over_soft_since = now
        return SOFT if now - since >= self.soft_s else None

    def __repr__(self) -> str:
        return f"<OutboundLimits hard={self.hard} soft={self.soft} for {self.soft_s:g} s high_water={self.high_water}>"


@functools.lru_cache(maxsize=16)
def _limits(hard: int | None, soft: int | None, soft_s: float) -> OutboundLimits:
    return OutboundLimits(hard, soft, soft_s)
