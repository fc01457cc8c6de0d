"""Noticing a stalled NATS connection (docs/cluster.md §5): a stopped
nats-server or a silent partition leaves the node's socket open, and
nats-py's ping notices only after ``PING_INTERVAL_S`` times three, and not
at all while what the node writes fills the socket's buffer (its
reconnect first waits for that buffer to be written, which never
happens).

So every heartbeat interval the link's watch looks at what the link holds
for NATS (``Link.held``) and at what NATS has taken of it: nats-py counts
a message's bytes as it takes it (``stats["out_bytes"]``), so that count
less what is still held grows as the socket takes bytes, and only then.
Bytes held and none taken for ``STALL_INTERVALS`` intervals in a row: the
link is stalled (``Link.stall``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .link import Link

__all__ = ["MIN_LOOK_S", "STALL_INTERVALS", "WriteWatch"]

STALL_INTERVALS = 3
# The watch looks at most this often: with the shortest heartbeats, a busy
# loop's pause of a few tens of ms would otherwise pass for a stall.
MIN_LOOK_S = 0.2


class WriteWatch:
    """The link's watch (module docstring)."""

    def __init__(self, link: Link, interval_s: float) -> None:
        self._link = link
        self.interval_s = max(interval_s, MIN_LOOK_S)
        self._stuck = 0  # looks in a row that found bytes held and none taken since the last
        self._taken = 0  # at the last look: bytes nats-py took less those still held

    def reset(self) -> None:
        self._stuck = 0

    async def run(self) -> None:
        link = self._link
        while True:
            await asyncio.sleep(self.interval_s)
            held = link.held if link.up else 0
            if not held:
                self._stuck = 0
                continue
            taken = link.nc.stats["out_bytes"] - held
            self._stuck = self._stuck + 1 if self._stuck and taken <= self._taken else 1
            self._taken = taken
            if self._stuck > STALL_INTERVALS:
                self._stuck = 0
                link.stall(held, STALL_INTERVALS * self.interval_s)
