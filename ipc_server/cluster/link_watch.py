"""Noticing a stalled NATS connection (docs/cluster.md §5): a stopped
nats-server or a silent partition leaves the node's socket open, and
nats-py's ping notices only after ``PING_INTERVAL_S`` times three, and not
at all while what the node writes fills the socket's buffer (its
reconnect first waits for that buffer to be written, which never
happens).

What the node's socket takes says little: the kernel's buffers take
megabytes (on loopback, up to 4 MB to send and 32 MB on nats-server's
side to receive) whether nats-server reads them or not, so a frozen
nats-server went unnoticed for 10 s and more while the node wrote
publishes into them, which were lost with the connection. So the watch
asks NATS itself: every heartbeat interval in which the node wrote
something, it writes a PING (one at a time, never waiting for it), and a
PING left unanswered for ``STALL_INTERVALS`` intervals in a row means the
link is stalled (``Link.stall``). nats-server answers PINGs in the order
it reads, after everything written before it, so a PONG also says NATS
has read what came before. The cost on a healthy link: six bytes each way
per interval, only while the node writes (its heartbeats do, every
interval).

The watch also looks at what the link holds for NATS (``Link.held``) and
at what NATS has taken of it: nats-py counts a message's bytes as it takes
it (``stats["out_bytes"]``), so that count less what is still held grows
as the socket takes bytes, and only then. Bytes held and none taken for
``STALL_INTERVALS`` intervals in a row is a stall as well (where the
installed nats-py keeps its PONGs otherwise, this is the only check).

A look that comes late (the node's own loop stalled) counts for neither:
a PONG may be waiting to be read behind that stall.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .link import Link

__all__ = ["MIN_LOOK_S", "STALL_INTERVALS", "WriteWatch", "send_ping"]

STALL_INTERVALS = 3
# The watch looks at most this often: with the shortest heartbeats, a busy
# loop's pause of a few tens of ms would otherwise pass for a stall.
MIN_LOOK_S = 0.2

_PING = b"PING\r\n"


def send_ping(nc: Any) -> asyncio.Future[Any] | None:
    """Write a PING on ``nc`` now, ahead of nats-py's pending buffer as its
    own pings are: the future nats-py resolves when it reads the PONG.
    None, with nothing written, where ``nc`` is not connected or keeps its
    PONGs' futures otherwise than this expects."""
    pongs = getattr(nc, "_pongs", None)
    transport = getattr(nc, "_transport", None)
    if type(pongs) is not list or not callable(getattr(transport, "write", None)) or not nc.is_connected:
        return None
    pong: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pongs.append(pong)  # nats-py resolves them in order, one per PONG read
    transport.write(_PING)  # type: ignore[union-attr]
    return pong


class WriteWatch:
    """The link's watch (module docstring)."""

    def __init__(self, link: Link, interval_s: float) -> None:
        self._link = link
        self.interval_s = max(interval_s, MIN_LOOK_S)
        self._stuck = 0  # looks in a row that found bytes held and none taken since the last
        self._taken = 0  # at the last look: bytes nats-py took less those still held
        self._pong: asyncio.Future[Any] | None = None  # the PING waiting for its PONG
        self._unanswered = 0  # looks that found it still waiting
        self._written = 0  # nats-py's count of bytes written when the last PING went

    def reset(self) -> None:
        """A new connection: what was asked on the last one is not waited for."""
        self._stuck = 0
        self._pong = None
        self._unanswered = 0

    async def run(self) -> None:
        link = self._link
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            late, last = now - last > 2 * self.interval_s, now
            if not link.up:
                self.reset()
            elif not late:
                self._look(link)

    def _look(self, link: Link) -> None:
        held = link.held
        if not held:
            self._stuck = 0
        else:
            taken = link.nc.stats["out_bytes"] - held
            self._stuck = self._stuck + 1 if self._stuck and taken <= self._taken else 1
            self._taken = taken
            if self._stuck > STALL_INTERVALS:
                self.reset()
                link.stall(f"NATS took none of the {held} bytes waiting for it in {STALL_INTERVALS * self.interval_s:g} s")
                return
        pong = self._pong
        if pong is not None and not pong.done():
            self._unanswered += 1
            if self._unanswered >= STALL_INTERVALS:
                self.reset()
                link.stall(f"NATS answered no PING in {STALL_INTERVALS * self.interval_s:g} s while the node wrote to it")
            return
        written = link.nc.stats["out_bytes"]
        if held or written != self._written:  # wrote since the last PING: is NATS reading it?
            self._written = written
            self._pong = send_ping(link.nc)
            self._unanswered = 0
