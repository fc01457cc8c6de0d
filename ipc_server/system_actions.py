"""The ``system`` actions the server answers itself (docs/protocol.md §8):
``stats``, ``channels``, ``services``, ``connections`` and ``describe``, each
scoped to the caller's app, and with users to what the caller may see
(docs/security.md §3.3). ``ping`` and ``connect`` are the protocol
connection's; any other action is routed like a request (server.py)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ipc_protocol import ErrorCode, Message, MessageType
from ipc_protocol.messages import response_to

from .admission import App
from .auth import Auth, app_figures
from .connection import ServerConnection
from .connection_list import answer_connections, page_bounds
from .router import HandlerRegistry
from .schemas import Schemas
from .stats import ServerStats
from .topics import SubscriptionTable

__all__ = ["answer_own_action", "channels_page"]


def answer_own_action(
    conn: ServerConnection,
    msg: Message,
    action: str,
    *,
    app: App,
    stats: ServerStats,
    auth: Auth | None,
    handlers: HandlerRegistry,
    schemas: Schemas,
    connections: Collection[ServerConnection],
    now: float,
    cluster: Any = None,
) -> None:
    """Answer ``action``, one of ``SERVER_SYSTEM_ACTIONS``, for ``conn``;
    as a node of a ``cluster``, ``stats``, ``channels`` and ``services``
    for the whole cluster (docs/cluster.md §4)."""
    if action == "stats":
        # With users, server-wide figures need the monitor permission (§8).
        result: Any = stats.snapshot() if auth is None or auth.monitor(conn) else app_figures(conn.app_id, app)
    elif action == "channels":  # a page of the table: one answer never costs the whole of a large one
        bounds = page_bounds(msg.payload, "channels")
        if isinstance(bounds, str):
            if msg.message_type is MessageType.REQUEST:
                conn.refuse(msg, ErrorCode.BAD_MESSAGE, bounds)
            return
        result = channels_page(app.subscriptions, msg.payload, *bounds)
    elif action == "services":
        # Responder counts, with 0 marking an in-process handler, which
        # takes precedence in routing (§6.1) and so wins here too.
        services = app.responders.counts()
        services.update({ch: 0 for ch in handlers.channels(conn.app_id)})
        result = {"services": services}
    elif action == "connections":  # one row per connection, to a monitor (docs/operations.md §3)
        answer_connections(conn, msg, connections, auth, now)
        return
    elif action == "describe":  # the channels' JSON Schemas (docs/typed-contracts.md)
        result = schemas.describe(conn.app_id, app.responders.counts(), handlers)
        if auth is not None:  # with users: only what the caller may request
            result["channels"] = auth.visible(conn, result["channels"])
    else:  # ping and connect: answered by the connection's protocol
        return
    if cluster is not None and action in ("stats", "channels", "services") and (action != "stats" or auth is None or auth.monitor(conn)):
        cluster.answer(conn, msg, action, result)
        return
    if msg.message_type is MessageType.REQUEST:
        conn.send(response_to(msg, result))


def channels_page(table: SubscriptionTable[Any] | None, payload: Any, offset: int, limit: int) -> dict[str, Any]:
    """``channels``' answer: ``{"channels": {...}}`` as it always was for a
    table that fits a page unasked; with ``total``, ``offset`` and ``limit``
    when the request names a page or the table does not fit in one."""
    page = table.page(offset, limit) if table is not None else {}
    total = len(table) if table is not None else 0
    result: dict[str, Any] = {"channels": page}
    if "offset" in payload or "limit" in payload or len(page) < total:
        result.update(total=total, offset=offset, limit=limit)
    return result
