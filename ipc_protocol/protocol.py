"""One protocol connection, sans-I/O: bytes in, messages and events out,
frames to send out (docs/protocol.md §1-§3, §6.4, §9).

The rules every connection obeys whatever its role are written here once;
the roles add their handshake (``server_protocol.ServerProtocol``,
``client_protocol.ClientProtocol``). Nothing here does I/O or reads a clock:
the pump (an asyncio protocol, a Node socket) feeds the bytes it read, acts
on what comes back, writes what is queued, and passes its clock in. The same
names are used in every language (Node: ``js-client/lib/protocol/``).

The API, in the order a pump uses it::

    frames = proto.receive_data(data, now)   # complete frame bodies, in order
    for frame in frames:
        if proto.state is not OPEN and proto.state is not HANDSHAKE:
            break                             # failed or closed: read no more
        item = proto.receive_frame(frame)     # decode one frame, apply the rules
        if type(item) is Message:             # an ordinary message: route it
            route(item, frame)                # (the body is kept for relaying)
        else:
            act_on(item)                      # an Event (events.py)
    write(proto.data_to_send())              # frames queued since the last call

    proto.send(message)        # encoded for the connection's version (v1 strips fields)
    proto.send_frame(frame)    # an already encoded frame (one relay to many connections)
    proto.fail(code, text, reply_to)  # the typed error frame (§6.4), then ``error``
    proto.close()              # ``closing``: write what is queued, then close
    proto.connection_lost()    # ``closed`` (``error`` stays ``error``)
    proto.tick(now)            # heartbeat (§9): queues a ping, or says the peer is dead

Two steps, ``receive_data`` then ``receive_frame`` per frame, so a frame is
applied only when the pump reaches it: answers to the first two frames of a
read go out before the third's error frame, even a bad length prefix's (a
``FramingFailure`` ends the list), as a sequential server would. An
ordinary message comes back as itself, with no event object. ``send`` and
``send_frame`` return how many frames are queued (0: no longer sending).

States (``ProtocolState``), every move checked against ``TRANSITIONS``::

    handshake -> open -> closing -> closed
        \\          \\
         +----------+--> error   (sticky: the error frame is queued, nothing more is read)
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from ._json import peek_message_id
from .attachments import BINARY, AttachmentError, as_binary
from .codes import ErrorCode
from .constants import DEFAULT_MAX_FRAME_SIZE, SYSTEM_CHANNEL
from .envelope import ErrorInfo, Message, MessageType, decode_message, decode_relayed, encode_message, encode_response
from .relayed import decode_envelope
from .exceptions import ProtocolError
from .frame_buffers import FrameBuffers
from .framing import FrameDecoder, FramingFailure, encode_frame
from .heartbeat import Heartbeat, HeartbeatAction
from .events import Event, MessageRefused, PingReceived, PongReceived, ProtocolViolation
from .messages import error_response
from .streams import FLOW_TYPES, flow_problem

__all__ = [
    "ProtocolState",
    "TRANSITIONS",
    "ProtocolStateError",
    "Protocol",
    "Event",
    "PingReceived",
    "PongReceived",
    "MessageRefused",
    "ProtocolViolation",
    "peek_message_id",
]


class ProtocolState(Enum):
    """The state of one protocol connection (the same strings in every language)."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    ERROR = "error"


HANDSHAKE = ProtocolState.HANDSHAKE
OPEN = ProtocolState.OPEN
CLOSING = ProtocolState.CLOSING
CLOSED = ProtocolState.CLOSED
ERROR = ProtocolState.ERROR

# The one table of legal moves. ``error`` and ``closed`` are final: after a
# violation the byte stream cannot be trusted again (§1.4).
TRANSITIONS: dict[ProtocolState, frozenset[ProtocolState]] = {
    HANDSHAKE: frozenset({OPEN, CLOSING, CLOSED, ERROR}),
    OPEN: frozenset({CLOSING, CLOSED, ERROR}),
    CLOSING: frozenset({CLOSED}),
    CLOSED: frozenset(),
    ERROR: frozenset(),
}

_NO_FEATURES: frozenset[str] = frozenset()  # shared: each frozenset() is a new 216-byte object, per connection

# The states in which frames are still read and sent.
_LIVE = frozenset({HANDSHAKE, OPEN})


class ProtocolStateError(RuntimeError):
    """A move the state table forbids: a bug in the caller, never the peer's doing."""


# -- the connection -------------------------------------------------------------


class Protocol:
    """The state and rules of one connection, shared by both roles.

    Args:
        max_frame_size: largest frame body accepted, checked on the length
            prefix (§1); ``None`` means the protocol maximum.
    """

    __slots__ = (
        "state",
        "app_id",
        "legacy",
        "heartbeat",
        "violation",
        "_decoder",
        "_out",
        "_live",
        "_pings",
        "features",
        "defer_payloads",
        "screened",
    )

    _one_app = False  # a role whose peer must stay in the handshake's app (the server)
    _views = False  # a binary frame's attachments as views of it, not bytes (§16.4: a relaying role)

    def __init__(self, *, max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.state = HANDSHAKE
        self.app_id = ""  # the handshake's, once open
        # A relaying server's: JSON payloads stay in their frames until read (relayed.py).
        self.defer_payloads = False
        # The peer refuses numbers that overflow a double on the way in (a version-2 server, §1.1).
        self.screened = False
        self.legacy = False  # the peer speaks version 1: send only its fields (§10)
        self.heartbeat: Heartbeat | None = None  # set by the role when the handshake enables it
        self.violation: ProtocolViolation | None = None  # why the state is ``error``
        self._decoder = FrameDecoder(max_frame_size)
        self._out: list[bytes] = []
        self._live = True  # state in _LIVE, kept as a flag for the send path
        # Unanswered pings, message_id -> sent at; None until the first (most
        # connections are never pinged: they are not silent).
        self._pings: dict[str, float | None] | None = None
        self.features: frozenset[str] = _NO_FEATURES  # what the handshake granted (§15.1)

    # -- state ----------------------------------------------------------------

    def _move(self, new: ProtocolState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise ProtocolStateError(f"cannot move from {self.state.value} to {new.value}")
        self.state = new
        self._live = new in _LIVE

    @property
    def max_frame_size(self) -> int:
        return self._decoder.max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, limit: int) -> None:
        """A role may change the limit once the handshake has agreed on one."""
        self._decoder.max_frame_size = limit

    # -- receiving ------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float | None = None) -> list[bytes]:
        """Feed bytes as read; returns the frame bodies they complete.

        Hand each to :meth:`receive_frame`, in order. A bad length prefix
        (§1.4) after complete frames ends the list with a ``FramingFailure``
        that fails the connection when reached; alone, it fails it now and
        no frame is returned (``self.violation`` says why). ``now``: the
        pump's clock, when a heartbeat is kept (any byte proves the peer alive).
        """
        if not self._live:
            return []
        if now is not None and self.heartbeat is not None:
            self.heartbeat.received(now)
        try:
            return self._decoder.feed(data)
        except ProtocolError as exc:
            # A TLS peer could not read an error frame: none is sent (§1.3).
            self._violated(exc.code, str(exc), None, None, frame=not self._decoder.tls, error=exc)
            return []

    def read_buffer(self, default: memoryview) -> memoryview:
        """Where the pump's next read should land: ``default``, or the rest
        of a large frame's own buffer, so that its bytes are read in place
        instead of copied (feed the slice read to :meth:`receive_data`)."""
        return self._decoder.read_buffer(default)

    def keep_frame_buffers(self, buffers: FrameBuffers) -> None:
        """Take large frames' buffers from ``buffers`` and give them back
        there (the pump's, one per loop: ``frame_buffers``)."""
        self._decoder.buffers = buffers

    def frame_complete(self, waiting: int, head: bytes) -> bool:
        """:meth:`FrameDecoder.completes` for this stream (a server's pending cap)."""
        return self._decoder.completes(waiting, head)

    def _undecodable(self, frame: bytes, exc: ProtocolError) -> ProtocolViolation:
        """A frame that does not decode, or the bad prefix a FramingFailure stands for."""
        error = frame.error if isinstance(frame, FramingFailure) else exc
        return self._violated(error.code, str(error), peek_message_id(frame), None, error=error)

    def receive_frame(self, frame: bytes) -> Message | Event:
        """Decode one frame and apply the protocol's rules to it.

        Returns the :class:`Message` itself when it is the pump's to route,
        else an :class:`Event`. Call it only while the state is ``handshake``
        or ``open``; the roles define what the handshake accepts.
        """
        if self.state is not OPEN:
            if self.state is not HANDSHAKE:
                raise ProtocolStateError(f"nothing is read in state {self.state.value}")
            return self._receive_before_open(frame)
        try:
            msg = decode_envelope(frame) if self.defer_payloads else decode_relayed(frame) if self.screened else decode_message(frame, views=self._views)
        except AttachmentError as exc:  # §16.2 items 4-5: the message is refused, not the stream
            return self._binary_refused(exc.envelope, str(exc))
        except ProtocolError as exc:
            return self._undecodable(frame, exc)
        if self._one_app and msg.app_id != self.app_id:
            text = f"app_id {msg.app_id!r} differs from the handshake's {self.app_id!r}"
            return self._violated(ErrorCode.FORBIDDEN, text, msg.message_id, msg)
        if msg.attachments is not None and BINARY not in self.features:  # §16.1 item 2
            return self._binary_refused(msg, "binary frames were not negotiated in the handshake (features)")
        if msg.message_type in FLOW_TYPES or msg.window is not None:  # §15: a stream's frames
            problem = flow_problem(msg, self.features)
            if problem is not None:
                return self._flow_refused(msg, problem)
        if msg.channel_id == SYSTEM_CHANNEL:
            return self._system_message(msg) or msg
        return msg

    def _flow_refused(self, msg: Message, text: str) -> Event:
        """A frame of §15 the connection may not send: refused, the
        connection stays open (§15.1 item 4); a client's role overrides it."""
        return self.refuse(msg, ErrorCode.BAD_MESSAGE, text)

    def _binary_refused(self, msg: Message, text: str) -> Event:
        """A binary frame this connection may not send, or whose attachments
        do not fit it: ``bad_message``, an error frame answering it (a
        notification's too), the connection stays open (§16.1, §16.2); a
        client's role overrides it."""
        if self._one_app and msg.app_id != self.app_id:
            return self._violated(ErrorCode.FORBIDDEN, f"app_id {msg.app_id!r} differs from the handshake's {self.app_id!r}", msg.message_id, msg)
        self.send(error_response(msg, ErrorCode.BAD_MESSAGE, text))
        return MessageRefused(msg, ErrorCode.BAD_MESSAGE, text)

    def _receive_before_open(self, frame: bytes) -> Message | Event:
        raise NotImplementedError  # the role's handshake

    def _system_message(self, msg: Message) -> Event | None:
        """What the core answers itself on ``system`` (§8, §9): pings and
        pongs. Anything else (None) is the pump's."""
        mtype = msg.message_type
        if mtype is MessageType.RESPONSE:
            if self._pings and msg.reply_to in self._pings:
                sent_at = self._pings[msg.reply_to]
                self._pings.clear()  # one answer proves the peer alive for all of them
                latency = None
                hb = self.heartbeat
                if hb is not None and sent_at is not None:
                    hb.pong_received(hb.last_received)  # the clock of the read that brought it
                    latency = hb.latency_s
                return PongReceived(msg, latency)
            return None
        payload = msg.payload
        if (mtype is MessageType.REQUEST or mtype is MessageType.NOTIFICATION) and isinstance(payload, dict):
            action = payload.get("action")
            if action == "ping":
                if mtype is MessageType.REQUEST:
                    self.send_frame(encode_frame(encode_response(msg, {"status": "pong"}, legacy=self.legacy)))
                return PingReceived(msg)
            return self._system_action(msg, action)
        return None

    def _system_action(self, msg: Message, action: Any) -> Event | None:
        """A role's own ``system`` actions; None leaves the message to the pump."""
        return None

    def refuse(self, msg: Message, code: ErrorCode, text: str) -> MessageRefused:
        """Answer ``msg`` with an error response, whatever its type but a
        notification (which expects no answer); the connection stays open."""
        if msg.message_type is not MessageType.NOTIFICATION:
            self.send(error_response(msg, code, text))
        return MessageRefused(msg, code, text)

    # -- sending --------------------------------------------------------------

    def send(self, message: Message) -> int:
        """Queue ``message``, encoded for the peer's version; returns the
        number of frames queued, 0 when the connection no longer sends.
        Raises (before queueing) if the message cannot be encoded."""
        if not self._live:
            return 0
        frame = encode_frame(encode_message(message, legacy=self.legacy))
        if frame.__class__ is not bytes and BINARY not in self.features:  # §16.5: the tagged form
            frame = as_binary(frame).tagged(self.legacy)
        return self.send_frame(frame)

    def send_frame(self, frame: bytes) -> int:
        """Queue an encoded frame (prefix included) as is; returns the number
        of frames queued, 0 when the connection no longer sends."""
        if not self._live:
            return 0
        out = self._out
        out.append(frame)
        return len(out)

    @property
    def frames_queued(self) -> int:
        """Frames waiting for :meth:`data_to_send`."""
        return len(self._out)

    def data_to_send(self) -> list[bytes]:
        """The frames queued since the last call, oldest first; the caller
        owns the list (write them in one go or one by one)."""
        out = self._out
        if not out:
            return []
        self._out = []
        return out

    # -- ending ---------------------------------------------------------------

    def fail(self, code: ErrorCode | str, text: str, reply_to: str | None = None, details: Any = None) -> ProtocolViolation | None:
        """Queue the typed error frame (§6.4) and move to ``error``; the pump
        writes what is queued, then closes. Does nothing once the connection
        no longer sends (returns None)."""
        return self._violated(code, text, reply_to, None, details=details) if self._live else None

    def _violated(self, code: ErrorCode | str, text: str, reply_to: str | None, msg: Message | None, *, frame: bool = True, error: ProtocolError | None = None, details: Any = None) -> ProtocolViolation:
        if frame:
            info = ErrorInfo.model_construct(code=str(code), message=text, details=details, remote_type=None, remote_stack=None)
            self.send(Message.build(MessageType.RESPONSE, self.app_id, SYSTEM_CHANNEL, None, reply_to=reply_to, error=info))
        self._move(ERROR)
        self.violation = ProtocolViolation(code, text, msg, error)
        return self.violation

    def close(self) -> None:
        """Stop reading and sending: ``closing``. The pump writes what is
        queued, then closes its socket. Does nothing once closing or ended."""
        if self._live:
            self._move(CLOSING)

    def connection_lost(self) -> None:
        """The socket is gone: ``closed`` (an ``error`` stays one); nothing queued will be sent."""
        if self.state is not ERROR and self.state is not CLOSED:
            self._move(CLOSED)
        self._out = []
        self._decoder.release()

    # -- heartbeat (§9) ---------------------------------------------------------

    def tick(self, now: float, *, reading: bool = True) -> HeartbeatAction:
        """Heartbeat on the pump's clock: ``PING`` when a ping was queued,
        ``DEAD`` when the peer has been silent past the timeout (the pump
        closes). ``reading=False``: the pump stopped reading (§12), so the
        peer's silence is ours and does not count; it is still pinged each
        interval, as a silent one is: a peer that went with bytes unsent
        answers a write with a reset (the pump's ``peer_gone``)."""
        hb = self.heartbeat
        if hb is None or self.state is not OPEN:
            return HeartbeatAction.NONE
        if not reading:
            hb.silent_an_interval(now)  # pinged if not since, never dead
        action = hb.poll(now)
        if action is HeartbeatAction.PING:
            self.send_ping(now)
        return action

    def send_ping(self, now: float | None = None) -> str:
        """Queue a ``system`` ping; returns its message_id. Its pong comes
        back as :class:`PongReceived`."""
        ping = Message.build(MessageType.REQUEST, self.app_id, SYSTEM_CHANNEL, {"action": "ping"})
        if self._pings is None:
            self._pings = {}
        self._pings[ping.message_id] = now
        self.send(ping)
        return ping.message_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.value} app={self.app_id!r} v{'1' if self.legacy else '2'} queued={len(self._out)}>"
