"""The ``system`` actions the server answers itself (docs/protocol.md §8):
``stats``, ``channels``, ``services``, ``connections`` and ``describe``, each
scoped to the caller's app, and with users to what the caller may see
(docs/security.md §3.3). ``ping`` and ``connect`` are the protocol
connection's; any other action is routed like a request (server.py)."""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import Any

from ipc_protocol import ErrorCode, Message, MessageType
from ipc_protocol.messages import response_to

from .admission import App
from .auth import Auth, app_figures
from .connection import ServerConnection
from .connection_list import answer_connections, page_bounds
from .router import HandlerRegistry
from .schemas import Schemas
from .served_pages import describe_page, paged, services_page
from .stats import ServerStats
from .topics import SubscriptionTable

__all__ = ["answer_own_action", "channels_page", "PAGED"]

# The actions answered a page at a time, with the same bounds and shape (§8).
PAGED = frozenset({"channels", "services", "describe"})


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
    as a node of a ``cluster``, ``stats`` and the paged actions for the
    whole cluster (docs/cluster.md §4)."""
    if action == "stats":
        # With users, server-wide figures need the monitor permission (§8).
        result: Any = stats.snapshot() if auth is None or auth.monitor(conn) else app_figures(conn.app_id, app)
    elif action == "connections":  # one row per connection, to a monitor (docs/operations.md §3)
        answer_connections(conn, msg, connections, auth, now)
        return
    elif action in PAGED:  # a page of the table: one answer never costs the whole of a large one
        bounds = page_bounds(msg.payload, action)
        if isinstance(bounds, str):
            if msg.message_type is MessageType.REQUEST:
                conn.refuse(msg, ErrorCode.BAD_MESSAGE, bounds)
            return
        if action == "channels":
            result = channels_page(app.subscriptions, msg.payload, *bounds)
        elif action == "services":  # responder counts, 0 marking an in-process handler
            result = services_page(app.responders, handlers, conn.app_id, msg.payload, *bounds)
        else:  # describe: the channels' JSON Schemas (docs/typed-contracts.md)
            result = describe_page(app.responders, handlers, schemas, conn.app_id, msg.payload, *bounds)
            if auth is not None:  # with users: those of the page the caller may request
                result["channels"] = auth.visible(conn, result["channels"])
    else:  # ping and connect: answered by the connection's protocol
        return
    if cluster is not None and (action in PAGED or auth is None or auth.monitor(conn)):  # stats: cluster-wide for a monitor
        # describe: the other nodes' channels too, narrowed here, where the caller's user is known
        narrow = partial(auth.visible, conn) if action == "describe" and auth is not None else None
        cluster.answer(conn, msg, action, result, narrow)
        return
    if msg.message_type is MessageType.REQUEST:
        conn.send(response_to(msg, result))


def channels_page(table: SubscriptionTable[Any] | None, payload: Any, offset: int, limit: int) -> dict[str, Any]:
    """``channels``' answer: ``{"channels": {...}}``, a page of it as
    ``served_pages.paged`` shapes every paged answer."""
    page = table.page(offset, limit) if table is not None else {}
    return paged("channels", page, payload, offset, limit, len(table) if table is not None else 0)
