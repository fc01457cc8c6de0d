"""One client connection's pump: bytes in -> its ``ServerProtocol`` ->
messages to the server; frames out -> one coalesced write per loop
iteration, except where nothing could join them (``send_frame``).

The protocol core keeps the connection's state and rules (the handshake,
pings, violations and their error frames); the pump owns the transport,
the timers, the batching of writes and the flow control, and knows nothing
about routing: it talks to the server through :class:`ConnectionOwner`.
Every write passes ``send_frame``, held to the peer's frame limit
(``frame_limit``); a peer that reads too slowly meets ``outbound`` (§12).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any, cast

from ipc_protocol import LOG_TEXT_LIMIT, ErrorCode, HeartbeatAction, Message, MessageType, clipped
from ipc_protocol.protocol import MessageRefused, PingReceived, ProtocolState, ProtocolViolation
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol

from .binary_frames import BinaryFrames, Frame, encode_message_parts, frame_parts
from .config import SERVER_NAME
from .connection_figures import ConnectionFigures
from .connection_owner import ConnectionOwner, SharedReads, configure_transport
from .frame_limit import PREFIX_BYTES, replacement, send_limit
from .half_close import HalfClose
from .inflight import InflightLimit
from .log_limits import allow_line
from .flow_control import FlowControl
from .outbound import Backlog, OutboundLimits
from .peer_gone import peer_gone
from .pending_cap import ConnectWaiting
from .reading import NOTHING, Reading
from .request_metrics import servers_own

__all__ = ["ServerConnection", "ConnectionOwner", "SharedReads", "ConnState"]

# Frames queued in one loop iteration go out in one write, the first after this many: a peer
# starts on a large batch while we encode the rest, and one read of a full pipeline of requests
# is answered in one write. Each write before the iteration ends doubles the count for the next
# (a read of 550 publishes to fan out: 5 writes per subscriber, not 17).
_FLUSH_EVERY_FRAMES = 32

_ABORT_AFTER_CLOSE_S = 2.0

log = logging.getLogger("ipc_server.connection")

ConnState = ProtocolState  # the connection's state is its protocol's (the name the server's tests know)
_OPEN = ProtocolState.OPEN
_HANDSHAKE = ProtocolState.HANDSHAKE
_NONE = NOTHING  # no registrations yet (see ServerConnection)
_NO_KEYS: Any = _NONE  # typed as the set the first add replaces it with


class ServerConnection(Reading, FlowControl, HalfClose, ConnectionFigures, BinaryFrames, ConnectWaiting, asyncio.BufferedProtocol):
    """asyncio protocol for one accepted socket."""

    __slots__ = (  # a server holds thousands of these, mostly idle
        "owner", "protocol", "transport", "peer", "app_id", "connection_id", "legacy", "client_name", "opened",
        "connected_at", "inflight", "serving", "awaiting", "handler_calls", "subscriptions", "responder_for", "_stats",
        "_reads", "_loop", "_flush_handle", "_write_after", "_answers_expected", "_ended", "_handshake_timer", "_abort_timer", "_limits",
        "_backlog", "_send_limit", "_unread", "_next_turn", "half_closed",
    )  # fmt: skip

    def __init__(self, owner: ConnectionOwner, accepted_at: float | None = None) -> None:
        self.owner = owner
        config = owner.config
        self.protocol = ServerProtocol(
            max_frame_size=config.max_frame_size,
            token=config.token,
            heartbeat_interval_s=config.heartbeat_interval_s,
            server_name=SERVER_NAME, cluster=config.cluster_name if config.cluster else None,  # docs/protocol.md §3 item 10
            users=config.users_file is not None,  # §3 item 2: idempotency keys are per user (§6.6 items 1, 10)
        )
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        # The handshake's outcome, copied from the protocol once open.
        self.app_id: str = ""
        self.connection_id: str = ""
        self.legacy = False
        self.client_name = ""
        self.opened = False  # the handshake completed (routing state exists)
        # The TCP accept, on the loop's clock: given when TLS came first (tls.py), whose time
        # counts against the handshake's deadline; else taken at connection_made (-1 until then).
        self.connected_at = -1.0 if accepted_at is None else accepted_at
        # Requests this connection sent that are being answered (§12).
        self.inflight = InflightLimit(config.max_inflight_per_connection, self, config.max_frame_size)
        # Forwarded requests this connection answers / waits on (§7.3), keys of
        # the forwarding table; then its handler calls. Each is the shared empty
        # frozenset until its first add makes the set (216 bytes; most never do).
        self.serving: set[tuple[ServerConnection, str]] = _NO_KEYS
        self.awaiting: set[tuple[ServerConnection, str]] = _NO_KEYS
        self.handler_calls: set[Any] = _NO_KEYS
        # Patterns subscribed to / served: a shared empty set until the first.
        self.subscriptions: AbstractSet[str] = _NONE
        self.responder_for: AbstractSet[str] = _NONE
        self._stats, self._reads = owner.stats, owner.reads
        self.protocol.keep_frame_buffers(owner.reads.frame_buffers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._write_after = _FLUSH_EVERY_FRAMES  # frames queued that make a write before the iteration ends
        self._answers_expected = False  # this read started handler tasks
        self._ended = False  # close or abort began; the transport is going
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._limits = OutboundLimits.of(config)  # slow consumers (§12): one object per server's settings
        self._backlog: Backlog | None = None  # frames waiting for the transport to drain
        self._send_limit = config.max_frame_size + PREFIX_BYTES  # a frame's length past which it is not sent
        self._unread: deque[Iterator[bytes]] | None = None  # frames read that wait for a turn (reading.py)
        self._next_turn: asyncio.Handle | None = None
        self.half_closed: asyncio.TimerHandle | None = None  # its peer sent its EOF and reads what it asked: the wait's bound (half_close.py)
        self._init_figures(owner.stats)  # what it did, for the operator (connection_figures)

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast: uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        configure_transport(transport)
        transport.set_write_buffer_limits(high=self._limits.high_water, low=self._limits.low_water)  # then our Backlog
        loop = self._loop = asyncio.get_running_loop()
        if self.connected_at < 0:
            self.connected_at = loop.time()
        if not self.owner.admit(self):
            return
        config = self.owner.config  # with credentials required, they have a deadline of their own (§12); never none
        timeout = config.auth_timeout_s if config.auth_enabled else config.handshake_timeout_s
        # One deadline from the TCP accept, a TLS handshake's time included (§12.1).
        self._handshake_timer = loop.call_at(self.connected_at + timeout, self._handshake_expired)

    def get_buffer(self, sizehint: int) -> memoryview:  # data_received copies what it keeps before the next read
        return self._reads.lend(self.protocol)  # a large frame: read in place

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._reads.lent[:nbytes])

    def _event(self, event: Any) -> None:
        """What the protocol reports besides ordinary messages (rare)."""
        message = getattr(event, "message", None)
        if message is not None:
            self.traffic.received[message.message_type] += 1
        if isinstance(event, ConnectRequested):
            self._send_limit = send_limit(event.message.payload, self.owner.config.max_frame_size) + PREFIX_BYTES
            self.owner.connect_requested(self, event)
        elif isinstance(event, ProtocolViolation):
            self._violated(event)
            return
        elif isinstance(event, MessageRefused):
            self._refused(event)
            return
        # A pong noted, or a ping answered: the core queued its pong as it read the frame.
        if isinstance(event, PingReceived) and event.message.message_type is MessageType.REQUEST:
            self.traffic.sent[MessageType.RESPONSE] += 1
        self._queued(self.protocol.frames_queued)

    def refuse(self, msg: Message, code: ErrorCode, text: str) -> None:
        """Answer ``msg`` with an error response; the connection stays open."""
        self._refused(self.protocol.refuse(msg, code, text))

    def _refused(self, refusal: MessageRefused) -> None:
        self._stats.count_error(refusal.code)
        msg = refusal.message
        if msg.message_type is not MessageType.NOTIFICATION:
            self.traffic.sent[MessageType.RESPONSE] += 1
            if self._stats.timing is not None and msg.message_type is MessageType.REQUEST and not servers_own(msg):  # docs/operations.md
                self._stats.timing.answered(self.app_id, msg.channel_id, refusal.code, self.read_at)
        else:  # no answer: logged and dropped
            if allow_line(self, f"notification dropped: {refusal.code}", log):  # at most a few lines a connection (log_limits)
                log.info("notification %s on '%s' from %s dropped: %s: %s", clipped(msg.message_id), clipped(msg.channel_id), clipped(self.connection_id), refusal.code, clipped(refusal.text, LOG_TEXT_LIMIT))
        self._queued(self.protocol.frames_queued)

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._drop_unread()
        self.protocol.connection_lost()
        for timer in (self._handshake_timer, self._abort_timer, self._flush_handle, self.half_closed):
            if timer is not None:
                timer.cancel()
        self._flush_handle = None
        self.owner.connection_closed(self)  # first: its cleanup's lines come before the close line
        self._log_closed(exc)

    # -- writing -----------------------------------------------------------

    @property
    def state(self) -> ProtocolState:
        return self.protocol.state

    @property
    def is_open(self) -> bool:
        state = self.protocol.state
        return state is _OPEN or state is _HANDSHAKE

    @property
    def heartbeat(self) -> Any:
        return self.protocol.heartbeat

    def send(self, msg: Message, *, at_once: bool = False) -> bool:
        """Encode and queue ``msg`` for this connection's protocol version
        (raises, before queueing, if it cannot be encoded)."""
        if self.send_frame(frame_parts(encode_message_parts(msg, legacy=self.protocol.legacy)), at_once=at_once):
            self.traffic.sent[msg.message_type] += 1
            return True
        return False

    def send_frame(self, frame: Frame, *, at_once: bool = False) -> bool:
        """Queue an encoded frame; a loop iteration's frames go out together, the first write
        after ``_FLUSH_EVERY_FRAMES``. Written at once, with those before it: ``at_once`` (nothing
        will join it; not during a read of several frames, ``SharedReads``), or the iteration's
        first frame during a read of one frame. Over the peer's limit (``frame_limit``): False."""
        if frame.__class__ is not bytes:  # a binary body (§16): as it is, or tagged base64 (binary_frames)
            return self._send_binary(frame, at_once)
        if len(frame) > self._send_limit:
            return self._too_large(frame)
        queued = self.protocol.send_frame(frame)
        if self._backlog is not None and self._past_hard(self._backlog, len(frame)):
            return False  # cut: a slow consumer (§12.2)
        if queued and queued < self._write_after and self._flush_handle is not None and not self._ended and (not at_once or self._reads.batch):
            return True  # it joins the iteration's batch, as _queued would have it: a call less per target of a fan-out or answer of a read
        return self._queued(queued, at_once)

    def _too_large(self, frame: bytes) -> bool:
        if self._ended:
            return False
        self._stats.frame_skipped(self.app_id, self.connection_id)
        instead = replacement(frame, self.app_id, self._send_limit - PREFIX_BYTES)
        if instead is not None and self._queued(self.protocol.send(instead)):
            self.traffic.sent[instead.message_type] += 1
        return False

    def _queued(self, queued: int, at_once: bool = False) -> bool:
        """``send_frame``'s rules, for ``queued`` frames now in the protocol
        (0: the connection no longer sends)."""
        if not queued or self._ended:
            return False
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)  # type: ignore[union-attr]
            at_once = at_once or self._reads.lone
        if queued >= self._write_after:  # a large batch: the next write waits for twice as many
            self._write_after *= 2
            self._write_pending()
        elif at_once and not self._reads.batch:
            self._write_pending()
        return True

    def _flush(self) -> None:
        self._flush_handle = None
        self._write_after = _FLUSH_EVERY_FRAMES
        self._write_pending()
        if self._backlog is not None:  # backed up: the slow-consumer limits (§12, outbound.py)
            self._check_backlog(self._backlog)

    def _write_pending(self) -> None:
        if self.transport is None:
            return
        frames = self.protocol.data_to_send()
        if not frames:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        stats = self._stats
        stats.messages_out += len(frames)
        stats.bytes_out += len(data)
        self.frames_out += len(frames)
        self.bytes_out += len(data)
        if self._backlog is None:
            self.transport.write(data)
        else:
            self._backlog.hold(data)
            self._backlog.unsent = 0

    # -- lifecycle -------------------------------------------------------

    def accept(self, connection_id: str) -> None:
        """The server's decision on the pending connect (§3): open under
        ``connection_id``; the reply is queued."""
        protocol = self.protocol
        protocol.accept(connection_id, now=self._loop.time())  # type: ignore[union-attr]
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.opened = True
        self.app_id = protocol.app_id
        self.connection_id = connection_id
        self.legacy = protocol.legacy
        self.client_name = protocol.client
        self.traffic = self._stats.traffic(self.app_id)
        self.traffic.sent[MessageType.RESPONSE] += 1
        self._queued(protocol.frames_queued)  # the reply, also when accepted later (a token checked off the loop)

    def refuse_connect(self, code: ErrorCode | str, text: str) -> None:
        """The server's refusal of the pending connect (§3): the error
        answer, then close (docs/security.md §3)."""
        self._violated(self.protocol.refuse_connect(code, text))

    def fail(self, code: ErrorCode | str, message: str, *, reply_to: str | None = None, linger: bool = False, details: Any = None) -> None:
        """Send an error frame where possible, then close (§1.4, §6.4); ``linger``: see close()."""
        violation = self.protocol.fail(code, message, reply_to, details)
        if violation is not None:
            self._violated(violation, linger)

    def _violated(self, violation: ProtocolViolation, linger: bool = False) -> None:
        self._stats.count_error(violation.code)
        self._closed_because(f"{violation.code}: {violation.text}")  # logged once closed (logs.log_closed)
        self.close(linger=linger)

    def close(self, reason: str = "closed by the server", *, linger: bool = False) -> None:
        """Flush what is queued, then close; abort if the peer does not read it.

        ``linger``: a peer still sending (refused at accept, its connect on the
        way) would be answered a reset by a closed socket, and a reset makes
        its kernel drop what it has not read yet, the refusal included. So
        only the writing side is shut; what comes is read and dropped until
        the peer closes, or the abort."""
        if self._ended:
            return
        self._closed_because(reason)
        self._ended = True
        if not self.opened:  # its pending place is free now, not when the lingering socket goes (§12.1)
            self.owner.handshake_ended(self)
        self.protocol.close()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._write_pending()
        if self.transport is not None:
            if linger and self.transport.can_write_eof():
                self.transport.write_eof()  # the peer's EOF then closes it (eof_received)
            else:
                self.transport.close()
            self._abort_timer = self._loop.call_later(_ABORT_AFTER_CLOSE_S, self.transport.abort)  # type: ignore[union-attr]

    def abort(self) -> None:
        if self.transport is not None and self.protocol.state is not ProtocolState.CLOSED:
            self._closed_because("aborted by the server")
            self._ended = True
            self.protocol.close()
            self.transport.abort()

    def _handshake_expired(self) -> None:
        """No valid connect in time (§3, §12): ``timeout``, then the close.
        A connect whose token is still being checked is answered as such,
        in reply to it, so its client can tell the server's deadline from its own."""
        self._handshake_timer = None
        if self.protocol.state is not _HANDSHAKE:
            return
        config = self.owner.config
        which, limit = ("auth", config.auth_timeout_s) if config.auth_enabled else ("handshake", config.handshake_timeout_s)
        if self.protocol.connect_pending:
            self.refuse_connect(ErrorCode.TIMEOUT, f"the credential check did not finish within the {which} timeout ({limit:g} s)")
        else:
            self.fail(ErrorCode.TIMEOUT, f"no valid connect within the {which} timeout ({limit:g} s)")

    # -- heartbeat (§9) ----------------------------------------------------

    def tick(self, now: float, late: bool = False) -> None:
        """The server's periodic sweep: ping a silent peer, drop a dead one,
        but only once a ping sent in its silence went unanswered (§9); ``late``:
        the loop stalled before this sweep (heartbeat_sweep)."""
        if self._backlog is not None and not self._ended:  # the soft limit's time runs without writes too (§12.2)
            self._check_backlog(self._backlog)
        if self.half_closed is not None:  # it sends no more, pongs included (half_close.py)
            self._half_closed_tick(now)
            return
        hb = self.protocol.heartbeat
        if hb is not None:  # a peer reading what waits for it, its answer behind that, is not silent (peer_took)
            hb.silent_since = max(hb.silent_since, self.peer_took(now))
        if hb is not None and now - hb.silent_since >= hb.timeout_s and (late or hb.last_ping_sent is None or hb.last_ping_sent < hb.silent_since):
            hb.silent_an_interval(now)  # the silence it could have answered: pinged now
        reading = not self.inflight.reading_paused and self._unread is None  # if not (§12, reading.py): its silence is ours, peer_gone asked
        if not reading and not self._ended:
            gone = peer_gone(self.transport)
            if gone is not None:
                self._closed_because(gone)  # then lost as any: its requests dropped, its responders sent cancel
                self.abort()
                return
        action = self.protocol.tick(now, reading=reading)
        if action is HeartbeatAction.PING:
            self.traffic.sent[MessageType.REQUEST] += 1
            self._queued(self.protocol.frames_queued)
        elif action is HeartbeatAction.DEAD:
            hb = self.protocol.heartbeat
            self._closed_because(f"silent for {now - hb.last_received:.1f} s (heartbeat, §9)")  # type: ignore[union-attr]
            self.abort()

    # -- flow control (§12): flow_control.FlowControl ------------------------

    def expect_answers(self) -> None:
        """A handler task was started for a request of the current read."""
        self._answers_expected = True

    def __repr__(self) -> str:
        v, state = "1" if self.legacy else "2", self.protocol.state.value
        return f"<ServerConnection {self.connection_id or '-'} app={self.app_id!r} state={state} v{v} inflight={self.inflight.count} serving={len(self.serving)}>"

