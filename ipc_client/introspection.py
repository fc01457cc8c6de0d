"""What the client reports of its health: a ping's verdict, and the
heartbeat's view of liveness without a round trip (docs/resilience.md §5)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ipc_protocol import PROTOCOL_VERSION, Heartbeat, IPCError
from ipc_protocol.messages import ping_request

from .calls import Calls
from .connection import ClientConnection
from .state import ConnectionState

__all__ = ["ping_health", "connection_health"]


async def ping_health(conn: ClientConnection | None, calls: Calls, state: ConnectionState, legacy: bool, timeout: float) -> dict[str, Any]:
    """``{healthy, state, latency_ms, protocol}`` from a ping round trip over
    ``conn`` (None: not connected), with ``error`` when it failed; never raises.
    ``legacy``: the latest server spoke version 1."""
    info: dict[str, Any] = {"healthy": False, "state": state.value, "latency_ms": None, "protocol": 1 if legacy else PROTOCOL_VERSION}
    if conn is None:
        return info
    if legacy:
        info["healthy"] = conn.is_open  # a 1.1.x server never answers pings
        return info
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        reply = await calls.call(conn, ping_request(calls.app_id), started + timeout)
    except IPCError as exc:
        info["error"] = {"code": str(exc.code), "message": str(exc)}
        return info
    info["latency_ms"] = round((loop.time() - started) * 1000, 3)
    info["healthy"] = isinstance(reply.payload, dict) and reply.payload.get("status") == "pong"
    return info


def connection_health(
    conn: ClientConnection | None, state: ConnectionState, loop: asyncio.AbstractEventLoop | None, last_pong: float | None
) -> dict[str, Any]:
    """Liveness as the heartbeat sees it, without a round trip; safe from any thread."""
    hb: Heartbeat | None = conn.heartbeat if conn is not None else None
    connected = state is ConnectionState.CONNECTED and conn is not None and conn.is_open
    health: dict[str, Any] = {
        "healthy": connected,
        "state": state.value,
        "last_heartbeat": None,
        "last_received": None,
        "latency_ms": None,
        "heartbeat_interval_ms": None,
        "heartbeat_timeout_ms": None,
    }
    if hb is None or loop is None:
        return health
    now = loop.time()  # the heartbeat's clock
    wall = time.time()
    silent = now - hb.last_received
    health.update(
        healthy=connected and silent <= hb.interval_s,
        last_received=wall - silent,
        last_heartbeat=None if last_pong is None else wall - (now - last_pong),
        latency_ms=None if hb.latency_s is None else round(hb.latency_s * 1000, 3),
        heartbeat_interval_ms=round(hb.interval_s * 1000, 3),
        heartbeat_timeout_ms=round(hb.timeout_s * 1000, 3),
    )
    return health
