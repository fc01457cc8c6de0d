"""The server's periodic sweep: each connection's heartbeat clock (§9).

One task for the whole server rather than a timer per connection: a server
holds thousands of mostly idle connections, and one pass over them every
quarter of a second (or a quarter of the heartbeat interval, if shorter)
costs far less than thousands of timer handles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

__all__ = ["sweep_heartbeats"]

log = logging.getLogger("ipc_server")

_SWEEP_INTERVAL_S = 0.25


class _Ticking(Protocol):
    def tick(self, now: float) -> object: ...


async def sweep_heartbeats(loop: asyncio.AbstractEventLoop, connections: Callable[[], Iterable[_Ticking]], interval_s: float | None) -> None:
    """Tick every connection ``connections()`` gives, forever (cancel to stop)."""
    period = min(_SWEEP_INTERVAL_S, interval_s / 4) if interval_s else _SWEEP_INTERVAL_S
    while True:
        await asyncio.sleep(period)
        try:
            now = loop.time()
            for conn in list(connections()):
                conn.tick(now)
        except Exception:  # pragma: no cover - the sweep must never die
            log.exception("sweep failed")
