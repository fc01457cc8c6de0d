"""The ``connections`` system action (docs/protocol.md §8,
docs/operations.md §3): one row per open connection, oldest first, as
NATS's ``/connz`` lists them: app, peer, protocol, uptime, messages and
bytes each way, requests pending, the outbound buffer.

It shows every app's connections, so with a users file only a user with
the ``monitor`` permission may call it (docs/security.md §3); anyone else
is answered ``forbidden``. Without users, any connection the server
admitted may.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ipc_protocol import SYSTEM_CHANNEL, ErrorCode, Message, MessageType
from ipc_protocol.messages import error_response, response_to

from .connection import ServerConnection

if TYPE_CHECKING:
    from .auth import Auth

__all__ = ["answer_connections", "page_bounds", "DEFAULT_LIMIT"]

# Rows in one answer unless the request asks for another ``limit`` (NATS's default too).
DEFAULT_LIMIT = 1024


def page_bounds(payload: Any, action: str) -> tuple[int, int] | str:
    """(offset, limit) of a paged action's request (``connections``,
    ``channels``), or what is wrong with them."""
    offset, limit = payload.get("offset", 0), payload.get("limit", DEFAULT_LIMIT)
    for name, value in (("offset", offset), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{action}: {name} must be a non-negative integer, got {value!r}"
    return offset, limit


def answer_connections(conn: ServerConnection, msg: Message, connections: Collection[ServerConnection], auth: Auth | None, now: float) -> None:
    """Answer ``msg`` from ``conn``: the rows, ``forbidden`` or ``bad_message``."""
    if auth is not None and not auth.monitor(conn):
        grant = auth.grants.get(conn)
        user = grant.user if grant is not None else "?"
        text = f"user {user!r} may not list the server's connections: that needs the monitor permission"
        details = {"operation": "request", "channel": SYSTEM_CHANNEL, "user": user, "action": "connections"}
        conn.owner.stats.count_error(ErrorCode.FORBIDDEN)
        conn.send(error_response(msg, ErrorCode.FORBIDDEN, text, details=details))  # even to a notification (§3)
        return
    if msg.message_type is not MessageType.REQUEST:
        return
    bounds = page_bounds(msg.payload, "connections")
    if isinstance(bounds, str):
        conn.refuse(msg, ErrorCode.BAD_MESSAGE, bounds)
        return
    offset, limit = bounds
    open_now = sorted((c for c in connections if c.opened), key=lambda c: c.connected_at)
    rows = []
    for other in open_now[offset : offset + limit]:
        row = other.figures(now)
        if auth is not None:
            grant = auth.grants.get(other)
            row["user"] = grant.user if grant is not None else None
        rows.append(row)
    result = {
        "total": len(open_now),
        "offset": offset,
        "limit": limit,
        "handshakes_pending": len(connections) - len(open_now),
        "connections": rows,
    }
    conn.send(response_to(msg, result))
