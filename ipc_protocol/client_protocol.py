"""The client's side of one connection, sans-I/O (docs/protocol.md §1, §3,
§9, §10), on the base :class:`~ipc_protocol.protocol.Protocol`.

The handshake: :meth:`ClientProtocol.connect` queues the connect request
(version 2: ``protocol``, the client's name, the ``connection_id`` it
proposes, and the user and token, if any). The first response that comes back is the
server's answer, whatever its ``reply_to``: a 1.1.x server answers without
one (§10). A reply without ``protocol`` is a version-1 server: from then on
every frame is sent with the seven version-1 fields only, and no ping is
sent (it would go unanswered). A reply to a connect that asked for
``features`` either carries a ``features`` list (the server
``negotiates``: today's) or none at all (a 2.0.0 server, which predates
§15.1 and also ignores our ``max_frame_size``, idempotency keys and the
§1.1 overflow screen). The frame limit is ours (``max_frame_size``, else
the protocol's 16 MiB default) with a version-1 server, and what we send
before the reply; until the reply we accept the larger of ours and 16 MiB.
After a version-2 reply we send no more than the smaller of ours and the
server's advertised one, and accept as much too from a server that
negotiates, but up to its advertised limit (at most the larger of what we
send and 16 MiB: with no limit of ours, the advertised one) from one that
does not (it never heard of ours, §12.3). A refusal (``unauthorized``, ``bad_message``...)
comes back as :class:`HandshakeRefused` with the typed exception.

Once open, the base rules apply: server pings are answered here, pongs to
this side's pings come back as :class:`~ipc_protocol.protocol.PongReceived`,
and every other message is returned as itself for the pump to route.

The API, in the order a pump uses it (the Node client's
``lib/protocol/client_protocol.js`` has the same names and events)::

    proto = ClientProtocol(app_id, connection_id, client=name, token=None, user=None,
                           max_frame_size=None, heartbeat_interval_s=None,
                           heartbeat_timeout_s=None)
    proto.connect()                        # queues the connect request
    write(proto.data_to_send())
    for frame in proto.receive_data(data, now):
        item = proto.receive_frame(frame)
        # Connected: open; legacy, negotiates, server_info, connection_id,
        #   max_frame_size (what we send), heartbeat_interval_s (advertised)
        # HandshakeRefused: error (the typed exception); state ``error``
        # PingReceived (already answered), PongReceived (latency_s)
        # ProtocolViolation: the server broke the protocol; state ``error``
        # a Message: the pump routes it
    proto.start_heartbeat(now)             # after Connected: True if pings are due
    proto.tick(now)                        # the base's heartbeat: PING queued, or DEAD

A violation queues the base's error frame; a client's pump may close
without writing it (our clients never sent one, and a server does not read
it).
"""

from __future__ import annotations

from typing import Any

from .codes import ErrorCode
from .constants import DEFAULT_HEARTBEAT_INTERVAL_S, DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION
from .envelope import Message, MessageType, decode_message
from .exceptions import FrameTooLarge, IPCError, NotConnected, ProtocolError, error_from_wire
from .heartbeat import Heartbeat
from .messages import connect_request
from .protocol import ERROR, HANDSHAKE, OPEN, Event, Protocol, ProtocolStateError
from .streams import negotiate
from .wire_numbers import whole_number, wire_number

__all__ = ["ClientProtocol", "Connected", "HandshakeRefused"]


class Connected(Event):
    """The server accepted the connect: the connection is ``open``.

    ``server_info``: the reply's payload; ``legacy``: a version-1 server;
    ``connection_id``: the one the server gave; ``max_frame_size``: the
    largest frame we now send (the protocol's ``max_frame_size`` is the
    largest we accept); ``heartbeat_interval_s``: the server's advertised
    interval (None: none or off); ``negotiates``: the reply carried
    ``features``, so the server knows §15.1 and what came with it (§12.3,
    §6.6, §1.1); False is a 2.0.0 (or version-1) server."""

    __slots__ = ("message", "server_info", "legacy", "connection_id", "max_frame_size", "heartbeat_interval_s", "negotiates")

    def __init__(
        self,
        message: Message,
        server_info: dict[str, Any],
        legacy: bool,
        connection_id: str,
        max_frame_size: int,
        heartbeat_interval_s: float | None,
        negotiates: bool = False,
    ) -> None:
        self.message = message
        self.server_info = server_info
        self.legacy = legacy
        self.connection_id = connection_id
        self.max_frame_size = max_frame_size
        self.heartbeat_interval_s = heartbeat_interval_s
        self.negotiates = negotiates


class HandshakeRefused(Event):
    """The server refused the connect, or answered it with something else
    than ``connected``: ``error`` is the exception to raise. State ``error``."""

    __slots__ = ("message", "error")

    def __init__(self, message: Message, error: IPCError) -> None:
        self.message = message
        self.error = error


class ClientProtocol(Protocol):
    """One connection to a server, as the client sees it.

    Args:
        app_id: the application the connection is for.
        connection_id: the id proposed to the server (it may give another).
        client: this implementation's name, sent to a version-2 server.
        token: the shared secret, for servers that require one.
        user: the user name, for servers with a users file (the token is then
            that user's).
        features: the optional parts of the protocol to ask for (§15.1:
            ``cancel``, ``streams``); None asks for none, and the connect is
            §3's byte for byte. Once open, ``features`` holds those granted.
        max_frame_size: our frame limit; None is the protocol's default.
        heartbeat_interval_s: ping after this long without a frame; None
            uses the server's advertised interval.
        heartbeat_timeout_s: the server is dead after this long without a
            frame; None is twice the interval.
    """

    __slots__ = (
        "connection_id", "client", "server_info", "keys_per_user", "negotiates", "send_limit", "_token", "_user", "_limit", "_hb_interval_s", "_hb_timeout_s", "_heartbeat_s", "_offered",
    )  # fmt: skip

    def __init__(
        self,
        app_id: str,
        connection_id: str,
        *,
        client: str,
        token: str | None = None,
        max_frame_size: int | None = None,
        heartbeat_interval_s: float | None = None,
        heartbeat_timeout_s: float | None = None,
        user: str | None = None,
        features: tuple[str, ...] | None = None,
    ) -> None:
        limit = DEFAULT_MAX_FRAME_SIZE if max_frame_size is None else max_frame_size
        # Until the reply says whether the server read ours, accept what a server at its
        # default may send: the reply then lowers it, or raises it no further (§12.3), so
        # what came in one read with the reply meets the limit it would meet read later.
        super().__init__(max_frame_size=max(limit, DEFAULT_MAX_FRAME_SIZE))
        self.app_id = app_id
        self.connection_id = connection_id
        self.client = client
        self.server_info: dict[str, Any] = {}
        # Once open: the server scopes idempotency keys per user (a users file,
        # §3 item 2), so a responder cannot tell whose keyed request it serves.
        self.keys_per_user = False
        # Once open: the reply carried ``features``; a 2.0.0 server's has none (§15.1 item 3).
        self.negotiates = False
        self.send_limit = limit  # the largest frame we send; max_frame_size is the largest we accept
        self._token = token
        self._user = user
        self._limit = max_frame_size  # ours as given: None leaves a version-2 server's limit as is
        self._hb_interval_s = heartbeat_interval_s
        self._hb_timeout_s = heartbeat_timeout_s
        self._heartbeat_s: float | None = None  # the interval in effect once open
        self._offered = features

    def connect(self) -> str:
        """Queue the connect request (§3); returns its message_id."""
        if self.state is not HANDSHAKE:
            raise ProtocolStateError(f"connect in state {self.state.value}")
        hello = connect_request(self.app_id, self.connection_id, client=self.client, token=self._token, protocol=PROTOCOL_VERSION, user=self._user)
        if self._limit is not None:  # our own receive limit: the server sends nothing larger (§3, §12)
            hello.payload["max_frame_size"] = self._limit
        if self._offered is not None:  # §15.1: only when asked, so the connect is otherwise §3's
            hello.payload["features"] = list(self._offered)
        self.send(hello)
        return hello.message_id

    def receive_frame(self, frame: bytes) -> Message | Event:
        """The base's, the frame first held to the limit the handshake agreed:
        one read in the same chunk as the reply was split off under the
        limit before it, and the split must not change the outcome (§1)."""
        if len(frame) > self.max_frame_size and self.state is OPEN:
            error = FrameTooLarge(len(frame), self.max_frame_size)
            return self._violated(error.code, str(error), None, None, error=error)
        return super().receive_frame(frame)

    def _receive_before_open(self, frame: bytes) -> Message | Event:
        try:
            msg = decode_message(frame)
        except ProtocolError as exc:
            return self._undecodable(frame, exc)
        if msg.attachments is not None:  # binary frames come after the handshake granted them (§16.1)
            return self._binary_refused(msg, "a binary frame before the handshake's reply")
        if msg.message_type is not MessageType.RESPONSE:
            return msg  # the pump's, as before the handshake it always was
        if msg.error is not None:
            return self._refused(msg, error_from_wire(msg.error.model_dump()))
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        if payload.get("status") != "connected":
            return self._refused(msg, NotConnected(f"unexpected handshake reply: {payload!r}"))
        self._move(OPEN)
        self.legacy = "protocol" not in payload
        # Today's server answers a connect that asked with a features list (maybe
        # empty); a 2.0.0 server's reply has none: it knows nothing of §15.1.
        self.negotiates = not self.legacy and isinstance(payload.get("features"), list)
        # What a server that negotiates sends holds no number that overflows a
        # double; a 2.0.0 server relays a 309-digit integer as it came (§1.1).
        self.screened = self.negotiates
        self.max_frame_size = self.send_limit  # ours, unless a version-2 reply changes it below
        self.server_info = dict(payload)
        self.keys_per_user = payload.get("users") is True and not self.legacy  # §6.6 item 10
        self.connection_id = str(payload.get("connection_id") or self.connection_id)
        # Numbers as the Node client reads them: 1000.0 is 1000, true is no number (wire_numbers).
        advertised = whole_number(payload.get("max_frame_size"))
        if not self.legacy and advertised is not None and advertised > 0:
            # Send no more than both sides allow (§1.1); accept as much from a server
            # that honours ours, up to its own limit from one that never read it (§12.3).
            self.send_limit = advertised if self._limit is None else min(advertised, self._limit)
            self.max_frame_size = self.send_limit if self.negotiates else min(advertised, max(self.send_limit, DEFAULT_MAX_FRAME_SIZE))
        interval_ms = wire_number(payload.get("heartbeat_interval_ms"))
        advertised_s = interval_ms / 1000.0 if interval_ms is not None and interval_ms > 0 else None
        if not self.legacy:  # a version-1 server never answers pings (§10)
            # Only an advertised 0 turns it off; none (or no number, or a negative one) is the default 15 s (§9 item 6), as in Node.
            server_s = DEFAULT_HEARTBEAT_INTERVAL_S if interval_ms is None or interval_ms < 0 else advertised_s
            self._heartbeat_s = self._hb_interval_s if self._hb_interval_s is not None else server_s
        granted = payload.get("features")
        if self._offered is not None and not self.legacy and isinstance(granted, list):
            # What both sides speak; a server older than §15 says nothing: none.
            self.features = frozenset(negotiate((f for f in granted if isinstance(f, str)), self._offered))
        return Connected(msg, self.server_info, self.legacy, self.connection_id, self.send_limit, advertised_s, self.negotiates)

    def _flow_refused(self, msg: Message, text: str) -> Event:
        """A server that sends a frame of §15 it did not grant broke the
        protocol: a violation, as for any invalid envelope."""
        return self._violated(ErrorCode.BAD_MESSAGE, text, msg.message_id, msg)

    def _binary_refused(self, msg: Message, text: str) -> Event:
        """A server that sends a binary frame it did not grant, or one whose
        attachments do not fit it, broke the protocol (§16.1)."""
        return self._violated(ErrorCode.BAD_MESSAGE, text, msg.message_id, msg)

    def _refused(self, msg: Message, error: IPCError) -> HandshakeRefused:
        self._move(ERROR)
        return HandshakeRefused(msg, error)

    def start_heartbeat(self, now: float) -> bool:
        """Keep a heartbeat from ``now`` on the pump's clock, if one is due:
        our interval, else the server's advertised one (half our timeout if
        that is not over it: Heartbeat); never with a version-1 server.
        Returns whether one is kept (then call :meth:`tick`)."""
        interval = self._heartbeat_s
        if self.state is not OPEN or interval is None:
            return False
        self.heartbeat = Heartbeat(interval, self._hb_timeout_s or 2 * interval, now)
        return True
