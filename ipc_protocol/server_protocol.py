"""The server's side of one connection, sans-I/O (docs/protocol.md §3, §10).

Before the handshake only a ``connect`` request on ``system`` is accepted;
the core validates it (``app_id`` set; ``protocol`` absent for version 1, or
an integer >= 2) and checks a shared token, then returns :class:`ConnectRequested`
with the credentials presented (``user``, ``token``). The decisions that
need every connection in view (a unique connection id) or time (hashing a
user's token, off the loop) are the server's: it answers with
:meth:`ServerProtocol.accept`, which queues the reply and opens the
connection, or :meth:`ServerProtocol.refuse_connect`; the connection stays
in the handshake state meanwhile. Once open, a message under another
``app_id`` is ``forbidden`` and a second ``connect`` is refused.
"""

from __future__ import annotations

import hmac
from sys import intern
from typing import Any

from .codes import ErrorCode
from .events import ProtocolViolation
from .constants import DEFAULT_MAX_FRAME_SIZE, HANDSHAKE_MAX_FRAME_SIZE, MAX_CONNECT_ID_LENGTH, PROTOCOL_VERSION, SYSTEM_CHANNEL
from .envelope import Message, MessageType, decode_message, encode_response
from .exceptions import ProtocolError
from .framing import ASSEMBLE_FROM_BYTES, NEVER_ASSEMBLE, encode_frame
from .heartbeat import Heartbeat
from .streams import negotiate, offered_features
from .cluster_info import CLUSTER, server_features
from .wire_numbers import whole_number
from .protocol import (
    HANDSHAKE,
    OPEN,
    Event,
    Protocol,
    ProtocolStateError,
)

__all__ = ["ServerProtocol", "ConnectRequested"]


class ConnectRequested(Event):
    """A valid ``connect`` (§3): the server decides, then calls
    :meth:`ServerProtocol.accept` or :meth:`ServerProtocol.refuse_connect`.
    ``connection_id``: the one the client proposed (``""`` for none);
    ``client``: its name (``""`` for none); ``user``, ``token``: the
    credentials presented (None for none; a shared token is already checked)."""

    __slots__ = ("message", "app_id", "connection_id", "legacy", "client", "user", "token", "features")

    def __init__(
        self,
        message: Message,
        app_id: str,
        connection_id: str,
        legacy: bool,
        client: str,
        user: str | None = None,
        token: str | None = None,
        features: list[str] | None = None,
    ) -> None:
        self.message = message
        self.app_id = app_id
        self.connection_id = connection_id
        self.legacy = legacy
        self.client = client
        self.user = user
        self.token = token
        self.features = features  # asked for in the connect (§15.1); None: not asked

    def __repr__(self) -> str:  # never the token
        token = "<hidden>" if self.token is not None else None
        return f"ConnectRequested(app_id={self.app_id!r}, connection_id={self.connection_id!r}, legacy={self.legacy}, user={self.user!r}, token={token})"


class ServerProtocol(Protocol):
    """One accepted connection, as the server sees it.

    Args:
        max_frame_size: the server's frame limit (§1), advertised in the reply.
        token: the shared secret a connect must carry (§3), or None.
        heartbeat_interval_s: ping a version-2 peer silent this long; 0 or
            None turns heartbeats off (§9). Advertised in the reply.
        server_name: advertised in the reply.
        cluster: the cluster's name when the server is a cluster node, named
            in the reply of a connect that asked for the feature ``cluster``.
        users: the server has a users file, so its idempotency keys are
            scoped per user (§6.6 item 1); said in a version-2 reply
            (``"users": true``) so a responder does not join one user's keyed
            request to another's run (§6.6 item 10). Absent otherwise.
        handshake_max_frame_size: the largest frame read until the connect
            is accepted (§3 item 11); ``max_frame_size`` from then on.
    """

    __slots__ = ("connection_id", "client", "_token", "_heartbeat_interval_s", "_server_name", "_connect", "_cluster", "_users", "_open_limit")

    # Every message after the handshake must be in the handshake's app (§3).
    _one_app = True
    _views = True  # attachments relayed as the views of their frame (§16.4)

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        token: str | None = None,
        heartbeat_interval_s: float | None = None,
        server_name: str = "",
        cluster: str | None = None,
        users: bool = False,
        handshake_max_frame_size: int = HANDSHAKE_MAX_FRAME_SIZE,
    ) -> None:
        super().__init__(max_frame_size=max_frame_size)
        # Until the connect is accepted a frame is held to the small limit,
        # checked on its length prefix (§3 item 11): a socket that has proved
        # nothing (no token checked yet) holds at most that much.
        self._open_limit = self._decoder.max_frame_size
        self._decoder.max_frame_size = min(self._open_limit, handshake_max_frame_size)
        # Until the connect is accepted, a large frame is read into the
        # shared buffer as its bytes come: a length prefix alone reserves
        # nothing (docs/security.md, "Hostile connections").
        self._decoder.assemble_from = NEVER_ASSEMBLE
        self.connection_id = ""
        self.client = ""
        self._token = token
        self._heartbeat_interval_s = heartbeat_interval_s
        self._server_name = server_name
        self._connect: ConnectRequested | None = None  # awaiting the server's accept
        self._cluster = cluster
        self._users = users

    def _receive_before_open(self, frame: bytes) -> Message | Event:
        try:
            msg = decode_message(frame)
        except ProtocolError as exc:
            return self._undecodable(frame, exc)
        payload = msg.payload
        if not (
            self._connect is None
            and msg.attachments is None  # binary frames come after the handshake granted them (§16.1)
            and msg.message_type is MessageType.REQUEST
            and msg.channel_id == SYSTEM_CHANNEL
            and isinstance(payload, dict)
            and payload.get("action") == "connect"
        ):
            return self._violated(ErrorCode.BAD_MESSAGE, "the first frame must be a connect request on 'system'", msg.message_id, msg)
        protocol = payload.get("protocol")
        legacy = protocol is None
        # The peer's version is known from here: every answer, a refusal
        # included, goes in its form (§10: version 1 has no ``error`` field).
        self.legacy = legacy
        # Integers as a JavaScript peer reads them (wire_numbers): 2.0 is 2, true is none.
        version = whole_number(protocol)
        if not msg.app_id or (not legacy and (version is None or version < 2)):
            text = "invalid connect: app_id must be set and protocol an integer >= 2"
            return self._violated(ErrorCode.BAD_MESSAGE, text, msg.message_id, msg)
        limit = payload.get("max_frame_size")  # the client's own receive limit (§3, §12)
        if limit is not None and ((declared := whole_number(limit)) is None or declared <= 0):
            return self._violated(ErrorCode.BAD_MESSAGE, "invalid connect: max_frame_size must be a positive integer", msg.message_id, msg)
        offered, user = payload.get("token"), payload.get("user")
        if user is not None and (not isinstance(user, str) or not user):
            return self._violated(ErrorCode.BAD_MESSAGE, "invalid connect: user must be a non-empty string", msg.message_id, msg)
        if not isinstance(offered, str):
            offered = None  # a token is a string or nothing
        try:
            features = None if legacy else offered_features(payload)  # §15.1
        except ValueError as exc:
            return self._violated(ErrorCode.BAD_MESSAGE, str(exc), msg.message_id, msg)
        wanted = payload.get("connection_id")
        client = payload.get("client")
        # §3 item 12: what the server keeps of a connection (its stats, metrics) has a bounded size.
        for name, value in (("app_id", msg.app_id), ("connection_id", wanted), ("client", client), ("user", user)):
            if isinstance(value, str) and len(value) > MAX_CONNECT_ID_LENGTH:
                text = f"invalid connect: {name} must be at most {MAX_CONNECT_ID_LENGTH} characters, got {len(value)}"
                return self._violated(ErrorCode.BAD_MESSAGE, text, msg.message_id, msg)
        if self._token is not None:
            if offered is None or not hmac.compare_digest(offered.encode(), self._token.encode()):
                return self._violated(ErrorCode.UNAUTHORIZED, "invalid or missing token", msg.message_id, msg)
        self._connect = ConnectRequested(
            msg,
            msg.app_id,
            wanted if isinstance(wanted, str) else "",
            legacy,
            client if isinstance(client, str) else "",
            user,
            offered,
            features,
        )
        return self._connect

    @property
    def connect_pending(self) -> bool:
        """A valid connect came and awaits :meth:`accept` or
        :meth:`refuse_connect` (its credentials are being checked)."""
        return self._connect is not None and self.state is HANDSHAKE

    def refuse_connect(self, code: ErrorCode | str, text: str) -> ProtocolViolation:
        """Refuse the pending connect (§3: ``unauthorized``): queue the error
        answer, in the client's version (§10: in the payload for version 1),
        and end in ``error``; the pump writes it and closes."""
        request = self._connect
        if request is None or self.state is not HANDSHAKE:
            raise ProtocolStateError(f"refuse_connect without a pending connect (state {self.state.value})")
        self._connect = None
        self.legacy = request.legacy
        return self._violated(code, text, request.message.message_id, request.message)

    def accept(self, connection_id: str, *, now: float | None = None) -> None:
        """Open the connection the pending connect asked for under
        ``connection_id``: queue the reply (version 1: status and id only)
        and start the heartbeat on the pump's clock ``now``."""
        request = self._connect
        if request is None or self.state is not HANDSHAKE:
            raise ProtocolStateError(f"accept without a pending connect (state {self.state.value})")
        self._move(OPEN)
        self._decoder.assemble_from = ASSEMBLE_FROM_BYTES
        self._decoder.max_frame_size = self._open_limit  # advertised below
        self._connect = None
        # Interned: the connections of an app, and of a client library, share one copy of each name.
        self.app_id = intern(request.app_id)
        self.connection_id = connection_id
        self.legacy = request.legacy
        self.client = intern(request.client)
        reply: dict[str, Any] = {"status": "connected", "connection_id": connection_id}
        interval = self._heartbeat_interval_s
        if not request.legacy:
            reply.update(
                protocol=PROTOCOL_VERSION,
                server=self._server_name,
                heartbeat_interval_ms=max(1, round(interval * 1000)) if interval else 0,  # never 0 (off) for an interval that is on
                max_frame_size=self.max_frame_size,
            )
            if self._users:  # §3 item 2: keys are per user (§6.6 items 1, 10); absent without a users file
                reply["users"] = True
            if request.features is not None:  # only when asked: the reply is otherwise §3's, byte for byte
                granted = negotiate(request.features, server_features(self._cluster))
                reply["features"] = granted
                if CLUSTER in granted:  # §3 item 10: a cluster node names its cluster
                    reply[CLUSTER] = self._cluster
                self.features = frozenset(granted)
            if interval and now is not None:
                self.heartbeat = Heartbeat(interval, 2 * interval, now)
        self.send_frame(encode_frame(encode_response(request.message, reply, legacy=request.legacy)))

    def _system_action(self, msg: Message, action: Any) -> Event | None:
        if action == "connect":
            return self.refuse(msg, ErrorCode.BAD_MESSAGE, "already connected")
        return None
