"""The server's periodic sweep: each connection's heartbeat clock (§9).

One task for the whole server rather than a timer per connection: a server
holds thousands of mostly idle connections, and one pass over them every
quarter of a second (or a quarter of the heartbeat interval, if shorter,
but never less than a quarter of the shortest interval allowed) costs far
less than thousands of timer handles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from ipc_protocol.constants import MIN_HEARTBEAT_INTERVAL_S

__all__ = ["sweep_heartbeats", "sweep_period"]

log = logging.getLogger("ipc_server")

_SWEEP_INTERVAL_S = 0.25
_MIN_SWEEP_INTERVAL_S = MIN_HEARTBEAT_INTERVAL_S / 4  # an embedder's tiny interval never makes it a busy loop


class _Ticking(Protocol):
    def tick(self, now: float) -> object: ...


def sweep_period(interval_s: float | None) -> float:
    """Seconds between two sweeps for the heartbeat interval ``interval_s``."""
    return max(_MIN_SWEEP_INTERVAL_S, min(_SWEEP_INTERVAL_S, interval_s / 4)) if interval_s else _SWEEP_INTERVAL_S


async def sweep_heartbeats(loop: asyncio.AbstractEventLoop, connections: Callable[[], Iterable[_Ticking]], interval_s: float | None) -> None:
    """Tick every connection ``connections()`` gives, forever (cancel to stop)."""
    period = sweep_period(interval_s)
    while True:
        await asyncio.sleep(period)
        try:
            now = loop.time()
            for conn in list(connections()):
                conn.tick(now)
        except Exception:  # pragma: no cover - the sweep must never die
            log.exception("sweep failed")
