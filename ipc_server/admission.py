"""Admission: which sockets the server keeps, the handshake's decisions
that need every connection in view, and the apps the connections belong to
(docs/protocol.md §2, §3, §12).

The protocol core validates a connect and checks its token; what is left
here is what only the server can know: the connection limits, whether it is
shutting down, and a connection id unique among its connections.

Two caps (§12): ``max_connections`` counts connections past the handshake;
sockets still in it count against ``max_pending_handshakes`` only, so
silent sockets never take the places of clients that hold the right
credentials. At the pending cap the *oldest* pending socket is evicted
(told ``too_many_connections``) and the new one kept, as nginx reuses its
oldest idle connections: a client that completes its handshake in one round
trip is then only shut out by a flood that opens the whole cap's worth of
sockets within that round trip, while refusing the newest would shut it out
for as long as the flood merely keeps the cap full.

Only a *silent* socket is evicted while there is one: one whose connect is
neither read nor complete among its unread bytes (``pending_cap``); a burst
of honest clients over the cap has its connects in, and evicting the first
of them for the last refused 172 of 300.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ipc_protocol import ErrorCode, Message, MessageType, clipped
from ipc_protocol.server_protocol import ConnectRequested

from .config import ServerConfig
from .connection import ServerConnection
from .host_lines import HostLines
from .logs import log_opened, peer_text
from .pending_cap import PendingCap, PendingSocket
from .router import ResponderTable
from .shutdown import Shutdown
from .stats import ServerStats
from .topics import SubscriptionTable

__all__ = ["App", "Admission", "responder_load"]

log = logging.getLogger("ipc_server")

@dataclass
class App:
    """Everything scoped to one ``app_id`` (§2: apps are isolated)."""

    subscriptions: SubscriptionTable[ServerConnection] = field(default_factory=SubscriptionTable)
    responders: ResponderTable[ServerConnection] = field(default_factory=ResponderTable)
    connections: int = 0


def responder_load(conn: ServerConnection) -> int:
    """A responder's load, for choosing among an app's responders: what it is answering."""
    return len(conn.serving)


class Admission:
    """The server's connections, by socket, by id and by app.

    Args:
        ids: the server's one counter of generated ids (connection ids here,
            server message ids in forwarding), so no two ever repeat a number.
    """

    def __init__(self, config: ServerConfig, stats: ServerStats, ids: itertools.count[int], shutdown: Shutdown) -> None:
        self._max_connections = config.max_connections
        self._max_pending = config.max_pending_handshakes
        self._stats = stats
        self._ids = ids
        self._shutdown = shutdown  # once closing, no new connection is kept
        self.connections: set[ServerConnection] = set()  # every socket kept, pending or open
        self.apps: dict[str, App] = {}
        self._by_id: dict[str, ServerConnection] = {}
        # Sockets not past the handshake (ours or TLS's), oldest first, and which one makes room (§12.1).
        self._pending = PendingCap(config.max_pending_handshakes)
        self._open = 0  # connections past the handshake: what max_connections counts
        # Lines about sockets refused at or before their handshake, limited per peer host (host_lines).
        self.lines = HostLines()

    def admit(self, conn: ServerConnection) -> bool:
        """Keep an accepted socket as a pending handshake, or refuse it with a
        typed error frame (full, shutting down); at the pending cap the oldest
        pending socket makes room (module docstring)."""
        if self._shutdown.closing:
            self._refuse(conn, ErrorCode.SHUTTING_DOWN, "the server is shutting down")
            return False
        if self._full():
            self._refuse(conn, ErrorCode.TOO_MANY_CONNECTIONS, f"the server holds its maximum of {self._max_connections} connections")
            return False
        self._make_room()
        self._pending.add(conn)
        self.connections.add(conn)
        self._stats.connections = len(self.connections)
        self._stats.handshakes_pending = len(self._pending)
        self._stats.connections_total += 1
        return True

    def _make_room(self) -> None:
        """At the pending cap, evict the oldest silent socket in its
        handshake; with none, the oldest past twice the cap (``pending_cap``)."""
        pending = self._pending
        oldest = pending.evictee()
        if oldest is not None:
            self._stats.handshakes_evicted += 1
            if self.lines.allow(oldest.peer, "evicted in its handshake", log):
                log.info("evicting %s: %d sockets are in their handshake", peer_text(oldest.peer), len(pending) + 1)
            oldest.fail(ErrorCode.TOO_MANY_CONNECTIONS, f"evicted: {self._max_pending} newer sockets are waiting to complete their handshake")

    # -- sockets in their TLS handshake (ipc_server.tls.TLSAccept) ----------

    def hold(self, sock: PendingSocket) -> None:
        """A socket's TLS handshake began: it counts against the pending cap
        as a socket in our own handshake does, and may be evicted the same way."""
        self._make_room()
        self._pending.add(sock)
        self._stats.handshakes_pending = len(self._pending)

    def release(self, sock: PendingSocket, *, failed: bool = False) -> None:
        """Its TLS handshake ended (the connection it becomes is admitted anew),
        or a socket in our handshake is being closed: its place is free at
        once, not when its socket is gone (``failed``: a TLS failure, counted)."""
        self._pending.discard(sock)
        self._stats.handshakes_pending = len(self._pending)
        if failed:
            self._stats.tls_handshakes_failed += 1

    def _full(self) -> bool:
        return self._max_connections is not None and self._open >= self._max_connections

    def _refuse(self, conn: ServerConnection, code: ErrorCode, text: str) -> None:
        """The refusal says why (§12): an error frame, then the close."""
        if self.lines.allow(conn.peer, f"refused: {code}", log):
            log.warning("refusing connection from %s: %s", peer_text(conn.peer), text)
        conn.fail(code, text, linger=True)  # its connect is on the way: no reset may drop the refusal

    def connect_requested(self, conn: ServerConnection, request: ConnectRequested) -> None:
        """The handshake's decision (§3): the id the client proposed, made
        unique on this server, or a generated one; or ``too_many_connections``
        when the connections past the handshake are at their maximum."""
        self._pending.discard(conn)
        self._stats.handshakes_pending = len(self._pending)
        if not conn.is_open:  # evicted or failed while its credentials were checked
            return
        if self._full():  # answered in the client's version (§10)
            text = f"the server holds its maximum of {self._max_connections} connections"
            if self.lines.allow(conn.peer, f"refused: {ErrorCode.TOO_MANY_CONNECTIONS}", log):
                log.warning("refusing connection from %s: %s", peer_text(conn.peer), text)
            conn.refuse_connect(ErrorCode.TOO_MANY_CONNECTIONS, text)
            return
        carried = self._reconnected(conn, request)
        base = request.connection_id or "conn"
        connection_id = base if base != "conn" else f"conn-{next(self._ids)}"
        while connection_id in self._by_id:
            connection_id = f"{base}-{next(self._ids)}"
        conn.accept(connection_id)
        self._open += 1
        self._by_id[connection_id] = conn
        self.apps.setdefault(request.app_id, App()).connections += 1
        if conn.user is None:  # a users file's user is the one auth found (a certificate's, anonymous)
            conn.user = request.user
        log_opened(conn, conn.user)  # INFO, with its app, peer and id (docs/operations.md §4)
        for pattern in carried:  # as the 1.1.2 server kept them under the connection id
            conn.owner.dispatch(conn, Message.build(MessageType.SUBSCRIBE, conn.app_id, pattern), b"")

    def _reconnected(self, conn: ServerConnection, request: ConnectRequested) -> list[str]:
        """A version-1 connect that reuses the id of an open version-1
        connection of the same app and user is that client reconnecting
        (docs/legacy.md): 1.1.x's ``disconnect()`` closes its socket while its
        receive thread is blocked in ``recv()``, so no FIN is sent and the old
        connection looks alive. The new one takes the id, as the 1.1.2 server
        re-pointed it. The old one is sent nothing more: a frame would wake
        that thread, which then reads the rest from the client's new socket;
        an EOF or a reset would make it mark the shared client disconnected.
        So it is not closed either: it goes when its peer closes it (or at
        shutdown), counted in ``max_connections`` until then. Its subscriptions
        are returned, to be the new one's (1.1.x keeps its handlers)."""
        old = self._by_id.get(request.connection_id)
        if old is None or not (request.legacy and old.legacy) or old.app_id != request.app_id or old.half_closed is not None:
            return []
        if old.user != (conn.user if conn.user is not None else request.user):
            return []  # never one user's connection taken by another
        del self._by_id[old.connection_id]
        carried = sorted(old.subscriptions)
        old.protocol.close()  # reads and writes stop: what it sends is dropped, nothing is written to it
        old.protocol.data_to_send()  # what was queued for it is never written
        old.owner.half_closed(old)  # no longer a subscriber or a responder (what was forwarded to it: responder_lost)
        log.info("connection %s from %s replaced by a reconnect from %s: its socket is kept, unwritten, until its peer closes it", clipped(old.connection_id), peer_text(old.peer), peer_text(conn.peer))
        return carried

    def remove(self, conn: ServerConnection, unserved: Callable[[ServerConnection, str], None]) -> bool:
        """Forget a closed connection and its registrations; ``unserved`` is
        told of each responder registration dropped, while it is dropped.
        False: the connection was never kept."""
        if conn not in self.connections:
            return False
        self.connections.discard(conn)
        self._pending.discard(conn)
        if conn.opened:
            self._open -= 1
        self._stats.connections = len(self.connections)
        self._stats.handshakes_pending = len(self._pending)
        if self._by_id.get(conn.connection_id) is conn:
            del self._by_id[conn.connection_id]
        app = self.apps.get(conn.app_id)
        if app is not None and conn.opened:
            self._stats.subscriptions -= len(conn.subscriptions)
            self._stats.registrations -= len(conn.responder_for)
            app.subscriptions.remove_all(conn.subscriptions, conn)  # one sweep when it held many
            for pattern in conn.responder_for:
                app.responders.remove(pattern, conn)
                unserved(conn, pattern)
            app.connections -= 1
            if app.connections == 0 and not len(app.subscriptions):
                del self.apps[conn.app_id]
        return True
