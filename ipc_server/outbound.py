"""Slow consumers (docs/protocol.md §12): the frames a connection holds for
a peer that reads slower than it is sent to, and when that peer is cut.

A connection hands its transport at most ``OutboundLimits.high_water``
bytes; past that (the transport's ``pause_writing``), frames wait in a
:class:`Backlog`, whole, until the transport drains (``resume_writing``).
Held here rather than in the transport, the cost of a write does not grow
with what is held, and a cut drops whole frames (but the rest of one that has begun to go out),
so the ``slow_consumer`` error frame goes out next, behind no more than the
high-water mark, instead of behind megabytes the peer may never read. The
backlog is a :class:`~ipc_protocol.write_queue.WriteQueue`, which also
writes a large binary frame a window at a time.

Two limits, the shape of Redis's ``client-output-buffer-limit``:
- hard, ``max_outbound_buffer_bytes`` (64 MiB, nats-server's pending
  limit): more than that held, the peer is cut at once;
- soft, ``outbound_soft_limit_bytes`` for ``outbound_soft_limit_s`` (16 MiB
  for 60 s): held continuously above it that long, the peer is cut. A burst
  that a subscriber catches up with is never cut for it.

Checked once per loop iteration of a connection that writes while backed
up, and the hard limit on every frame queued for it then (a running count
of their bytes), so the cut comes within a frame of it, and by the
server's heartbeat sweep, so the soft limit's time runs out also for a
connection that nothing more is written to; a connection that is not
backed up pays nothing but one attribute test.
Sans-I/O apart from ``Backlog.resume`` (``WriteQueue``'s), which writes to the transport it is given.
"""

from __future__ import annotations

import functools
from typing import Any

from ipc_protocol.write_queue import WINDOW_BYTES, FrameWindows, WriteQueue

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


class Backlog(WriteQueue):
    """A connection's frames waiting for its transport to drain, in order
    (``WriteQueue``), and ``over_soft_since``: when the held bytes last
    went over the soft limit and stayed there (None: they are under it).
    ``drained``: what the connection's in-process stream producers wait on
    while it is backed up (one future of the connection's loop for all of
    them, each waiting shielded; done when the backlog goes: drained, or
    dropped by a cut), so that they never add to a backlog
    (docs/protocol.md §12.2)."""

    __slots__ = ("over_soft_since", "drained", "unsent")

    def __init__(self) -> None:
        super().__init__()
        self.over_soft_since: float | None = None
        self.drained: Any = None
        self.unsent = 0  # bytes of frames queued for it since its last write (the hard limit's running count)

    def gone(self) -> None:
        """The connection no longer holds this backlog: its waiter goes on."""
        waiter, self.drained = self.drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


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
