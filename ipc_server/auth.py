"""Users at run time (docs/security.md §3, docs/protocol.md §3): who a
connect is, what its connection may do, and what a reload of the users
file changes for the connections already open.

The protocol core hands over a valid connect (``ConnectRequested``, with
the ``user`` and ``token`` it presented); this module decides, off the
loop where a token must be hashed (``verifier``), while the connection
stays in the handshake state, then accepts it (the server's admission
gives the connection id) or refuses it ``unauthorized``. Once open, each
operation is checked against the connection's :class:`Grant` and a denied
one is answered ``forbidden``, naming the operation and the channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ipc_protocol import LOG_TEXT_LIMIT, SERVER_SYSTEM_ACTIONS, SYSTEM_CHANNEL, ErrorCode, ErrorInfo, Message, MessageType, clipped, validate_pattern
from ipc_protocol.messages import error_response
from ipc_protocol.protocol import ProtocolState
from ipc_protocol.server_protocol import ConnectRequested

from .cert_subjects import subject_of_cert
from .connection import ServerConnection
from .decoy import decoy_hash
from .log_limits import allow_line
from .logs import peer_text
from .permissions import Grant
from .recheck import UsersReload, recheck
from .stats import ServerStats
from .users import User, Users
from .verifier import Verifier, VerifierBusy, address_of

__all__ = ["Auth"]

log = logging.getLogger("ipc_server.auth")

_HANDSHAKE = ProtocolState.HANDSHAKE  # a connection's state while its connect waits
_BAD_CREDENTIALS = "invalid user or token"
_PREPOSITIONS = {"publish": "on", "request": "on", "subscribe": "to", "serve": ""}


def _grant(user: User) -> Grant:
    return Grant(user.name, user.credential, user.apps, user.permissions)


def _what(operation: str, channel: str) -> str:
    prep = _PREPOSITIONS[operation]
    return f"{operation} {prep} {channel!r}" if prep else f"{operation} {channel!r}"


class Auth:
    """Authentication and authorization for a server with a users file.

    Args:
        users: the users file, loaded.
        stats: the server's counters (``forbidden`` and ``unauthorized`` counts).
        accept: the server's admission of a connect it found acceptable
            (gives the connection id and opens the connection).
    """

    def __init__(
        self,
        users: Users,
        stats: ServerStats,
        accept: Callable[[ServerConnection, ConnectRequested], None],
        verifier: Verifier | None = None,
    ) -> None:
        self.users = users
        self.grants: dict[ServerConnection, Grant] = {}
        # A reload's state (recheck.py): its number, the connections whose grant
        # predates its users, what it disconnected and withdrew so far.
        self.reloads = 0
        self._stale: set[ServerConnection] = set()
        self._counts = {"disconnected": 0, "withdrawn": 0}
        self._stats = stats
        self._accept = accept
        self.verifier = verifier or Verifier()
        self._waiting: dict[ServerConnection, bytes] = {}  # connections whose token is being checked
        # The token of a user without a hash to match is hashed against this, with the
        # file's scrypt parameters: a wrong name costs what a wrong token costs (decoy.py).
        self.decoy = decoy_hash(users)

    # -- the handshake (§3) ---------------------------------------------------------

    def connect(self, conn: ServerConnection, request: ConnectRequested) -> None:
        """Decide on a connect: now when no token has to be hashed (or a
        recent success is remembered), else once the verifier has."""
        peercert = conn.transport.get_extra_info("peercert") if conn.transport is not None else None
        name, user, refusal = self._identify(request, peercert)
        if refusal is not None:
            self._refuse(conn, *refusal, name)
            return
        token = request.token
        if user is None or (user.token_hash is not None and token is not None):
            stored = user.token_hash if user is not None else self.decoy
            key = self.verifier.key(name or "", stored or "", token or "")
            if user is not None and self.verifier.cached(key):
                self._admit(conn, request, user)
                return
            try:
                future = self.verifier.start(key, token or "", stored or "", peer=address_of(conn.peer), within_s=_time_left(conn))
            except VerifierBusy as exc:
                self._busy(conn, exc)
                return
            self._waiting[conn] = key
            future.add_done_callback(lambda f: self._verified(conn, request, name or "", stored or "", f))
            return
        self._admit(conn, request, user)

    def _identify(self, request: ConnectRequested, peercert: Any) -> tuple[str | None, User | None, tuple[str, str] | None]:
        """(the user's name, the user unless a token must be checked first
        (None: the token is checked against the decoy), a refusal (the text,
        why for the log) or None). A named user whose credential is missing
        or wrong gets the text an unknown one gets, after the same work:
        nothing at once without a token, one scrypt with one."""
        users = self.users
        name = request.user
        subject = subject_of_cert(peercert)
        if name is None:
            user = users.by_subject.get(subject) if subject else None
            if user is None:
                if request.token is not None:
                    return None, None, ("a token needs its user name ('user' in the connect) on this server", "")
                user = users.anonymous
                if user is None:
                    legacy = " (a version-1 client cannot present any)" if request.legacy else ""
                    return None, None, (f"credentials required{legacy}", "")
            return user.name, user, None
        user = users.get(name)
        if user is not None and user.cert_subject is not None and user.cert_subject != subject:
            user = None  # not its certificate: as if unknown
        if user is None:
            return name, None, None if request.token is not None else (_BAD_CREDENTIALS, _why(users.get(name), None))
        if user.token_hash is not None and request.token is None:
            return name, None, (_BAD_CREDENTIALS, "no token")
        if user.token_hash is None and user.cert_subject is None and request.token is not None:
            return name, None, None  # a token for `anonymous`, which has none: checked against the decoy, refused
        return name, user, None

    def _verified(self, conn: ServerConnection, request: ConnectRequested, name: str, stored: str, future: asyncio.Future[bool]) -> None:
        if self._waiting.pop(conn, None) is None:
            return  # the connection closed meanwhile
        if future.cancelled():
            return  # dropped: the verifier closed
        if isinstance(future.exception(), VerifierBusy):
            self._busy(conn, future.exception())  # its turn came too late to finish in time
            return
        user = self.users.get(name)
        ok = future.exception() is None and future.result()
        if not ok or user is None or user.token_hash != stored:
            # Wrong token, unknown user, a certificate user without its certificate, or the user changed while it was checked.
            self._refuse(conn, _BAD_CREDENTIALS, _why(user, stored), name)
            return
        self._admit(conn, request, user)

    def _busy(self, conn: ServerConnection, exc: BaseException | None) -> None:
        """``too_many_connections``, at once: a check that cannot be queued,
        or whose turn came with too little time left to finish."""
        if conn.state is not _HANDSHAKE:
            return
        if conn.owner.refusal_lines.allow(conn.peer, "refused: busy checking credentials", log):
            log.warning("refusing %s: %s", peer_text(conn.peer), clipped(exc, LOG_TEXT_LIMIT))
        conn.refuse_connect(ErrorCode.TOO_MANY_CONNECTIONS, f"the server is busy checking credentials ({exc}): try again")

    def _admit(self, conn: ServerConnection, request: ConnectRequested, user: User) -> None:
        if conn.state is not _HANDSHAKE:
            return  # closed, or failed by the auth timeout, while it was checked
        grant = _grant(user)
        if not grant.may_connect_as(request.app_id):
            self._refuse(conn, f"user {user.name!r} may not connect as app {request.app_id!r}", "", user.name)
            return
        conn.user = user.name  # its opening and closing are logged with it (docs/operations.md §4)
        self._accept(conn, request)
        if conn.opened:
            self.grants[conn] = grant
            log.debug("connection %s is user %s", clipped(conn.connection_id), clipped(user.name))

    def _refuse(self, conn: ServerConnection, text: str, why: str, name: str | None) -> None:
        """Answer ``text``; the close line says the user and ``why`` too (the
        operator's, never the client's): one event, one line."""
        if conn.state is not _HANDSHAKE:
            return
        conn.user = name
        conn._closed_because(f"{ErrorCode.UNAUTHORIZED}: {text} (user {name or '-'}{f': {why}' if why else ''})")
        conn.refuse_connect(ErrorCode.UNAUTHORIZED, text)

    def closed(self, conn: ServerConnection) -> None:
        self.grants.pop(conn, None)
        self._stale.discard(conn)
        key = self._waiting.pop(conn, None)
        if key is not None:
            self.verifier.release(key)

    # -- operations ----------------------------------------------------------------

    def permits(self, conn: ServerConnection, msg: Message) -> bool:
        """Whether ``msg`` is allowed; if not, it is answered ``forbidden``."""
        grant = self.grants.get(conn)
        if self._stale and conn in self._stale:  # not re-checked yet since a reload: now
            grant = self.current(conn)
            if grant is None:
                return False  # disconnected by the new users
        mtype = msg.message_type
        channel = msg.channel_id
        if mtype is MessageType.PUBLISH:
            if grant is not None and grant.may_publish(channel):
                return True
            operation = "publish"
        elif mtype is MessageType.REQUEST or mtype is MessageType.NOTIFICATION:
            if channel == SYSTEM_CHANNEL:
                payload = msg.payload
                if isinstance(payload, dict) and payload.get("action") in SERVER_SYSTEM_ACTIONS:
                    return True  # the server's own actions, scoped by the server (§8)
            if grant is not None and grant.may_request(channel):
                return True
            operation = "request"
        elif mtype is MessageType.SUBSCRIBE:
            try:
                validate_pattern(channel)
            except ValueError:
                return True  # pubsub answers bad_message
            serve = isinstance(msg.payload, dict) and msg.payload.get("serve") is True
            operation = "serve" if serve else "subscribe"
            if grant is not None and (grant.may_serve(channel) if serve else grant.may_subscribe(channel)):
                return True
        else:
            return True  # responses, unsubscribes
        self._forbid(conn, msg, operation, grant)
        return False

    def _forbid(self, conn: ServerConnection, msg: Message, operation: str, grant: Grant | None) -> None:
        """Answer a denied operation, even a publish or a notification that
        expects no answer: nothing is dropped silently (docs/protocol.md §3)."""
        user = grant.user if grant is not None else "?"
        text = f"user {user!r} may not {_what(operation, msg.channel_id)}"
        details = {"operation": operation, "channel": msg.channel_id, "user": user}
        self._stats.count_error(ErrorCode.FORBIDDEN)
        if allow_line(conn, f"forbidden {operation}", log):  # at most a few lines a connection (log_limits)
            log.info("%s (%s): %s", clipped(conn.connection_id), clipped(msg.message_id), clipped(text, LOG_TEXT_LIMIT))
        conn.send(error_response(msg, ErrorCode.FORBIDDEN, text, details=details))

    def visible(self, conn: ServerConnection, channels: dict[str, Any]) -> dict[str, Any]:
        """``describe``'s channels (§8) the user may request at least one
        channel of: a schema shows what a channel is for."""
        grant = self.current(conn)
        if grant is None:
            return {}
        rule = grant.permissions.request
        return {channel: schema for channel, schema in channels.items() if rule.reaches(channel)}

    def monitor(self, conn: ServerConnection) -> bool:
        """Whether the connection's user may see server-wide figures (§8)."""
        grant = self.current(conn)
        return grant is not None and grant.permissions.monitor

    # -- reload ----------------------------------------------------------------------

    def replace(self, users: Users, withdraw: Callable[[ServerConnection, str, bool], None], over: Callable[[UsersReload], None]) -> UsersReload:
        """Apply a new users file: new connects and operations are checked
        against it at once; then every open connection is re-checked
        (recheck.py): one whose user was removed, whose credential changed
        or who may no longer use the app is disconnected ``unauthorized``;
        subscriptions and registrations the new rights no longer allow are
        withdrawn (``withdraw(conn, pattern, serve)``) and the client told
        ``forbidden``. Returns the counts, final once the re-check is over
        (``over(counts)`` is called then)."""
        self.users = users
        self.decoy = decoy_hash(users)  # the new file's parameters
        self.verifier.forget()
        self.reloads += 1
        self._counts = counts = UsersReload()
        connections = list(self.grants)
        self._stale = set(connections)
        recheck(self, self.reloads, connections, withdraw, counts, over)
        return counts

    def current(self, conn: ServerConnection) -> Grant | None:
        """The connection's grant under the users loaded now, made from them
        if a reload came since it was made (which may disconnect it); None
        for a connection without one (closed, or not past its handshake)."""
        grant = self.grants.get(conn)
        if grant is None or conn not in self._stale:
            return grant
        self._stale.discard(conn)
        user = self.users.get(grant.user)
        reason = why = None  # why: the error's details.reason, for the client (docs/protocol.md §3)
        if user is None:
            reason, why = f"user {grant.user!r} was removed", "removed"
        elif user.credential != grant.credential:
            # A rotated token or the same one hashed again (new salt or cost): only the next handshake tells.
            reason, why = f"the credential of user {grant.user!r} changed", "credential"
        elif not ("*" in user.apps or conn.app_id in user.apps):
            reason, why = f"user {grant.user!r} may no longer connect as app {conn.app_id!r}", "app"
        if reason is not None or user is None:
            del self.grants[conn]
            self._counts["disconnected"] += 1
            log.info("disconnecting %s: %s", clipped(conn.connection_id), clipped(reason, LOG_TEXT_LIMIT))
            conn.fail(ErrorCode.UNAUTHORIZED, reason or "", details={"reason": why, "user": grant.user})
            return None
        new = self.grants[conn] = _grant(user)
        return new

    def withdrawn(self, conn: ServerConnection, user: str, operation: str, pattern: str) -> None:
        """Count a registration a reload withdrew, and tell the client: an error frame
        (§6.4) whose details say which, so the client drops it too. A
        version-1 client would route such a frame to its handlers: it is
        only logged."""
        self._counts["withdrawn"] += 1
        text = f"user {user!r} may no longer {_what(operation, pattern)}"
        log.info("%s: %s", clipped(conn.connection_id), clipped(text, LOG_TEXT_LIMIT))
        if conn.legacy:
            return
        details = {"operation": operation, "channel": pattern, "user": user, "revoked": True}
        error = ErrorInfo.model_construct(code=str(ErrorCode.FORBIDDEN), message=text, details=details, remote_type=None, remote_stack=None)
        conn.send(Message.build(MessageType.RESPONSE, conn.app_id, SYSTEM_CHANNEL, None, reply_to=None, error=error))

    def close(self) -> None:
        self.verifier.close()


def _why(user: User | None, stored: str | None) -> str:
    """What was wrong with a refused credential, for the log."""
    if user is None:
        return "no such user"
    if user.token_hash is None:
        return "not its client certificate" if user.cert_subject is not None else "a token for a user that has none"
    if stored is None:
        return "no token"
    return "wrong token" if user.token_hash == stored else "the user changed while its token was checked"


def _time_left(conn: ServerConnection) -> float:
    """Until the connection's auth timeout: a check not started by then is dropped."""
    return conn.connected_at + conn.owner.config.auth_timeout_s - asyncio.get_running_loop().time()


def app_figures(app_id: str, app: Any) -> dict[str, Any]:
    """The ``stats`` answer of a user without ``monitor``: its own app's (§8)."""
    return {"scope": "app", "app": app_id, "connections": app.connections, "subscriptions": len(app.subscriptions), "services": len(app.responders)}

