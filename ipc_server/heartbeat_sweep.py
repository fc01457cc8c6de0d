"""The server's periodic sweep: each connection's heartbeat clock (§9).

One task for the whole server rather than a timer per connection: a server
holds thousands of mostly idle connections, and one pass over them every
quarter of a second (or a quarter of the heartbeat interval, if shorter,
but never less than a quarter of the shortest interval allowed) costs far
less than thousands of timer handles.

A peer is closed for silence only after a ping the server sent in that
silence went unanswered for the rest of the timeout (docs/protocol.md §9):
a sweep that comes more than a period late (the loop stalled: nothing was
read or sent meanwhile) counts no silence beyond one interval, so every
silent peer is pinged then and has the usual time to answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from ipc_protocol.heartbeat import check_period

__all__ = ["sweep_heartbeats", "sweep_period"]

log = logging.getLogger("ipc_server")

_SWEEP_INTERVAL_S = 0.25


class _Ticking(Protocol):
    def tick(self, now: float, late: bool = False) -> object: ...


def sweep_period(interval_s: float | None) -> float:
    """Seconds between two sweeps for the heartbeat interval ``interval_s``."""
    # The clients' stall bound too (ipc_protocol.heartbeat); its floor: an embedder's tiny interval is never a busy loop.
    return check_period(interval_s) if interval_s else _SWEEP_INTERVAL_S


async def sweep_heartbeats(loop: asyncio.AbstractEventLoop, connections: Callable[[], Iterable[_Ticking]], interval_s: float | None) -> None:
    """Tick every connection ``connections()`` gives, forever (cancel to stop)."""
    period = sweep_period(interval_s)
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        try:
            now = loop.time()
            late = now - due > period  # the loop stalled: what it did not read meanwhile is not the peers' silence
            for conn in list(connections()):
                conn.tick(now, late)
        except Exception:  # pragma: no cover - the sweep must never die
            log.exception("sweep failed")
