"""Admission: which sockets the server keeps, the handshake's decisions
that need every connection in view, and the apps the connections belong to
(docs/protocol.md §2, §3, §12).

The protocol core validates a connect and checks its token; what is left
here is what only the server can know: the connection limit, whether it is
shutting down, and a connection id unique among its connections.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ipc_protocol.server_protocol import ConnectRequested

from .config import ServerConfig
from .connection import ServerConnection
from .router import ResponderTable
from .shutdown import Shutdown
from .stats import ServerStats
from .topics import SubscriptionTable

__all__ = ["App", "Admission"]

log = logging.getLogger("ipc_server")


@dataclass
class App:
    """Everything scoped to one ``app_id`` (§2: apps are isolated)."""

    subscriptions: SubscriptionTable[ServerConnection] = field(default_factory=SubscriptionTable)
    responders: ResponderTable[ServerConnection] = field(default_factory=ResponderTable)
    connections: int = 0


class Admission:
    """The server's connections, by socket, by id and by app.

    Args:
        ids: the server's one counter of generated ids (connection ids here,
            server message ids in forwarding), so no two ever repeat a number.
    """

    def __init__(self, config: ServerConfig, stats: ServerStats, ids: itertools.count[int], shutdown: Shutdown) -> None:
        self._max_connections = config.max_connections
        self._stats = stats
        self._ids = ids
        self._shutdown = shutdown  # once closing, no new connection is kept
        self.connections: set[ServerConnection] = set()
        self.apps: dict[str, App] = {}
        self._by_id: dict[str, ServerConnection] = {}

    def admit(self, conn: ServerConnection) -> bool:
        """Keep an accepted socket, or abort it (limit reached, shutting down)."""
        limit = self._max_connections
        closing = self._shutdown.closing
        if closing or (limit is not None and len(self.connections) >= limit):
            log.warning("refusing connection from %s: %s", conn.peer, "shutting down" if closing else "max_connections reached")
            conn.abort()
            return False
        self.connections.add(conn)
        self._stats.connections = len(self.connections)
        self._stats.connections_total += 1
        return True

    def connect_requested(self, conn: ServerConnection, request: ConnectRequested) -> None:
        """The handshake's decision (§3): the id the client proposed, made
        unique on this server, or a generated one."""
        base = request.connection_id or "conn"
        connection_id = base if base != "conn" else f"conn-{next(self._ids)}"
        while connection_id in self._by_id:
            connection_id = f"{base}-{next(self._ids)}"
        conn.accept(connection_id)
        self._by_id[connection_id] = conn
        self.apps.setdefault(request.app_id, App()).connections += 1
        log.debug("connection %s from %s: app=%s protocol=%s", connection_id, conn.peer, request.app_id, 1 if request.legacy else 2)

    def remove(self, conn: ServerConnection, unserved: Callable[[ServerConnection, str], None]) -> bool:
        """Forget a closed connection and its registrations; ``unserved`` is
        told of each responder registration dropped, while it is dropped.
        False: the connection was never kept."""
        if conn not in self.connections:
            return False
        self.connections.discard(conn)
        self._stats.connections = len(self.connections)
        if self._by_id.get(conn.connection_id) is conn:
            del self._by_id[conn.connection_id]
        app = self.apps.get(conn.app_id)
        if app is not None and conn.opened:
            for pattern in conn.subscriptions:
                app.subscriptions.remove(pattern, conn)
            for pattern in conn.responder_for:
                app.responders.remove(pattern, conn)
                unserved(conn, pattern)
            app.connections -= 1
            if app.connections == 0 and not len(app.subscriptions):
                del self.apps[conn.app_id]
        return True
