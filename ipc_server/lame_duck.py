"""Lame duck (docs/protocol.md §13.1), after nats-server's lame-duck mode: a
server that is asked to leave first stops accepting connections and tells
every client it is leaving, then keeps serving the ones it has for up to
``lame_duck_duration_s`` so they can move to another server of their list;
only then does the shutdown of §13 begin. A client that moves closes its
connection, so the wait ends early once every client has gone.

The notice is a ``publish`` on ``system``, sent only to the connections
granted the feature ``lame_duck`` (§15.1): a peer that did not ask might
hand it to a ``>`` subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Collection

from ipc_protocol.restarts import LAME_DUCK, lame_duck_notice

from .connection import ServerConnection
from .shutdown import Shutdown

__all__ = ["lame_duck"]

log = logging.getLogger("ipc_server")


async def lame_duck(
    listener: asyncio.base_events.Server | None,
    connections: Collection[ServerConnection],
    shutdown: Shutdown,
    loop: asyncio.AbstractEventLoop,
    duration_s: float,
) -> int:
    """Stop accepting, send every client the notice, wait until they have
    gone or ``duration_s`` has passed (or the shutdown closes them); returns
    how many connections were told."""
    shutdown.leaving = True
    if listener is not None:
        listener.close()  # the port is free: a new server may bind it while this one finishes
    told = 0
    deadline_ms = math.ceil(duration_s * 1000)
    for conn in list(connections):
        if conn.opened and conn.is_open and LAME_DUCK in conn.protocol.features:
            told += conn.send(lame_duck_notice(conn.app_id, deadline_ms))
    log.info("lame duck: %d of %d connections told; closing within %g s", told, len(connections), duration_s)
    await shutdown.until_gone(loop, connections, duration_s)
    return told
