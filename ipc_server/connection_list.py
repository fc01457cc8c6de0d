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

__all__ = ["answer_connections", "page_bounds", "DEFAULT_LIMIT", "MAX_LIMIT", "MAX_OFFSET"]

# Rows in one answer unless the request asks for another ``limit`` (NATS's default too).
DEFAULT_LIMIT = 1024
# The most rows one answer holds, whatever ``limit`` asks: a page's cost is
# the server's to bound, not the caller's (a describe page of 10**9 entries
# over 100,000 registrations held the loop 0.34-0.73 s). The answer names
# the limit it used, so a client pages on by it.
MAX_LIMIT = DEFAULT_LIMIT
# An offset past this reads as this: no table holds so many entries, so the
# page is the same (empty), and the answer's offset is one a JavaScript
# number holds exactly (2^53-1), never one ``islice`` refuses (> 2^63-1).
MAX_OFFSET = 2**53 - 1


def page_bounds(payload: Any, action: str) -> tuple[int, int] | str:
    """(offset, limit) of a paged action's request (``connections``,
    ``channels``, ``services``, ``describe``), held to ``MAX_OFFSET`` and
    ``MAX_LIMIT``, or what is wrong with them."""
    offset, limit = payload.get("offset", 0), payload.get("limit", DEFAULT_LIMIT)
    for name, value in (("offset", offset), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{action}: {name} must be a non-negative integer, got {value!r}"
    return min(offset, MAX_OFFSET), min(limit, MAX_LIMIT)


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
