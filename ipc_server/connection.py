"""One client connection: bytes in -> core -> messages to the server; messages
out -> one coalesced write per loop iteration, except where nothing could
join them (below).

The adapter owns the transport, the decoder, the outbound buffer and the
connection's identity. It knows nothing about routing: every decoded message
goes to ``server.dispatch``. Every write passes ``send_frame``, the one choke
point that checks state and the slow-consumer limit (docs/protocol.md §12).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from ipc_protocol import (
    ErrorCode,
    FrameDecoder,
    Heartbeat,
    Message,
    MessageType,
    ProtocolError,
    decode_message,
    encode_frame,
    encode_message,
)
from ipc_protocol._json import loads
from ipc_protocol.messages import error_response

if TYPE_CHECKING:
    from .server import IPCServer

__all__ = ["ServerConnection", "ConnState"]

# Frames queued in one loop iteration go out in one write, but no more than
# this many: a peer starts on the first frames of a large batch while we
# still encode the rest (in our measurements, ~10% more round trips/s via a
# responder than one write per iteration, for the same CPU). 32 rather than
# 16: a read of 64 requests in flight holds ~20, and at 16 each read's
# answers took two writes (a quarter more system calls per round trip).
_FLUSH_EVERY_FRAMES = 32

log = logging.getLogger("ipc_server.connection")

_ABORT_AFTER_CLOSE_S = 2.0


class ConnState(Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ServerConnection(asyncio.BufferedProtocol):
    """asyncio protocol for one accepted socket."""

    def __init__(self, server: IPCServer) -> None:
        self.server = server
        config = server.config
        self.decoder = FrameDecoder(config.max_frame_size)
        self.state = ConnState.HANDSHAKE
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.app_id: str = ""
        self.connection_id: str = ""
        self.legacy = False
        self.client_name = ""
        self.connected_at = 0.0
        self.heartbeat: Heartbeat | None = None
        # Requests this connection sent that are being answered (handlers or
        # forwarded); reading pauses at the limit (§12).
        self.inflight = 0
        # Requests forwarded to this connection as a responder, and forwarded
        # requests this connection is waiting on: keys of the server's table,
        # (responder, the message_id the responder was sent) (§7.3).
        self.serving: set[tuple[ServerConnection, str]] = set()
        self.awaiting: set[tuple[ServerConnection, str]] = set()
        # In-process handler calls answering this connection's requests.
        self.handler_calls: set[Any] = set()
        self.opened = False  # the handshake completed (routing state exists)
        self.subscriptions: set[str] = set()
        self.responder_for: set[str] = set()
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._answers_expected = False  # this read started handler tasks
        self._reading_paused = False
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._max_out = config.max_outbound_buffer_bytes
        self._max_inflight = config.max_inflight_per_connection

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports (--loop uvloop) are
        # not subclasses of asyncio.Transport, though they implement it.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:  # pragma: no cover - not a TCP socket
                pass
        # The slow-consumer check is ours; let the transport buffer freely.
        transport.set_write_buffer_limits(high=2**30)
        loop = asyncio.get_running_loop()
        self.connected_at = loop.time()
        if not self.server._accept(self):
            return
        timeout = self.server.config.handshake_timeout_s
        if timeout:
            self._handshake_timer = loop.call_later(timeout, self._handshake_expired)

    # Reads land in the server's one receive buffer (IPCServer._read_buffer);
    # data_received copies what it keeps before the next read.

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server._read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self.state is ConnState.CLOSED or self.state is ConnState.CLOSING:
            return
        stats = self.server.stats
        stats.bytes_in += len(data)
        if self.heartbeat is not None:
            self.heartbeat.received(self.server.loop.time())
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self.fail(exc.code, str(exc))
            return
        server = self.server
        dispatch = server.dispatch
        # A read of one frame: what it sends has nothing to wait for (send_frame).
        server.lone_read = len(frames) == 1
        try:
            for body in frames:
                if self.state is ConnState.CLOSING:
                    return
                try:
                    msg = decode_message(body)
                except ProtocolError as exc:
                    self.fail(exc.code, str(exc), reply_to=_peek_message_id(body))
                    return
                stats.messages_in += 1
                try:
                    dispatch(self, msg, body)
                except Exception:  # a bug or an unencodable relay: never crash the loop
                    log.exception("dispatching %s %s from %s failed", msg.message_type.value, msg.message_id, self.connection_id)
                    self.fail(ErrorCode.BAD_MESSAGE, "the server could not process this message", reply_to=msg.message_id)
                    return
        finally:
            server.lone_read = False
        if self._answers_expected:
            self._answers_expected = False
            # The handler tasks this read started run first in the next loop
            # iteration; a flush queued behind them sends what they answered in
            # that same iteration, not one later.
            if self._flush_handle is None and self.is_open:
                self._flush_handle = self.server.loop.call_soon(self._flush)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = ConnState.CLOSED
        for timer in (self._handshake_timer, self._abort_timer):
            if timer is not None:
                timer.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out.clear()
        self.server._connection_closed(self)

    # -- writing -----------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is ConnState.OPEN or self.state is ConnState.HANDSHAKE

    def send(self, msg: Message, *, at_once: bool = False) -> bool:
        """Encode and queue ``msg`` for this connection's protocol version."""
        if not self.is_open:
            return False
        return self.send_frame(encode_frame(encode_message(msg, legacy=self.legacy)), at_once=at_once)

    def send_frame(self, frame: bytes, *, at_once: bool = False) -> bool:
        """Queue an encoded frame; the frames of one loop iteration go out
        together, in writes of at most ``_FLUSH_EVERY_FRAMES``.

        Written at once, with any queued before it: ``at_once`` (the caller
        knows nothing will join it), or the connection's first frame of the
        iteration while the server handles a read of one frame. Frames that
        follow in the iteration are batched as usual.
        """
        state = self.state  # is_open, inline: this runs for every frame sent
        if state is not ConnState.OPEN and state is not ConnState.HANDSHAKE:
            return False
        out = self._out
        out.append(frame)
        server = self.server
        server.stats.messages_out += 1
        if self._flush_handle is None:
            self._flush_handle = server.loop.call_soon(self._flush)
            at_once = at_once or server.lone_read
        if at_once or len(out) >= _FLUSH_EVERY_FRAMES:
            self._write_pending()
        return True

    def _flush(self) -> None:
        self._flush_handle = None
        self._write_pending()
        if (
            self._max_out is not None
            and self.transport is not None
            and self.transport.get_write_buffer_size() > self._max_out
        ):
            self.server.stats.slow_consumers += 1
            log.warning("slow consumer %s (%s): outbound buffer over %d bytes", self.connection_id, self.peer, self._max_out)
            self.fail(ErrorCode.SLOW_CONSUMER, "outbound buffer limit exceeded: reading too slowly")

    def _write_pending(self) -> None:
        out = self._out
        if not out or self.transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.server.stats.bytes_out += len(data)
        self.transport.write(data)

    # -- lifecycle -------------------------------------------------------

    def open(self, app_id: str, connection_id: str, *, legacy: bool, client_name: str) -> None:
        """The handshake succeeded (§3)."""
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.state = ConnState.OPEN
        self.opened = True
        self.app_id = app_id
        self.connection_id = connection_id
        self.legacy = legacy
        self.client_name = client_name
        interval = self.server.config.heartbeat_interval_s
        if interval and not legacy:
            self.heartbeat = Heartbeat(interval, 2 * interval, self.server.loop.time())

    def fail(self, code: ErrorCode | str, message: str, *, reply_to: str | None = None) -> None:
        """Send an error frame where possible, then close (§1.4, §6.4)."""
        if not self.is_open:
            return
        self.server.stats.count_error(code)
        log.info("closing %s (%s): %s: %s", self.connection_id or "-", self.peer, code, message)
        stub = Message.model_construct(
            message_id=reply_to or "",
            app_id=self.app_id,
            channel_id="system",
            message_type=MessageType.REQUEST,
        )
        err = error_response(stub, code, message)
        if reply_to is None:
            err = err.model_copy(update={"reply_to": None})
        self.send(err)
        self.close()

    def close(self) -> None:
        """Flush what is queued, then close; abort if the peer does not read it."""
        if self.state is ConnState.CLOSED or self.state is ConnState.CLOSING:
            return
        self.state = ConnState.CLOSING
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._write_pending()
        if self.transport is not None:
            self.transport.close()
            self._abort_timer = self.server.loop.call_later(_ABORT_AFTER_CLOSE_S, self.transport.abort)

    def abort(self) -> None:
        if self.transport is not None and self.state is not ConnState.CLOSED:
            self.state = ConnState.CLOSING
            self.transport.abort()

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.state is ConnState.HANDSHAKE:
            self.server.stats.count_error(ErrorCode.BAD_MESSAGE)
            log.info("closing %s: no handshake within %.1f s", self.peer, self.server.config.handshake_timeout_s)
            self.close()

    # -- flow control ------------------------------------------------------

    @property
    def reading_paused(self) -> bool:
        return self._reading_paused

    def request_started(self) -> None:
        self.inflight += 1
        if self._max_inflight is not None and self.inflight >= self._max_inflight and not self._reading_paused:
            self._reading_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def expect_answers(self) -> None:
        """A handler task was started for a request of the current read."""
        self._answers_expected = True

    def request_finished(self) -> None:
        self.inflight -= 1
        if self._reading_paused and self.inflight <= (self._max_inflight or 0) // 2:
            self._reading_paused = False
            if self.transport is not None and self.state is ConnState.OPEN:
                self.transport.resume_reading()

    def __repr__(self) -> str:
        return (
            f"<ServerConnection {self.connection_id or '-'} app={self.app_id!r} state={self.state.value}"
            f" v{'1' if self.legacy else '2'} inflight={self.inflight} serving={len(self.serving)}>"
        )


def _peek_message_id(body: bytes) -> str | None:
    """Best effort: the message_id of a frame that failed validation."""
    try:
        obj = loads(body)
    except ProtocolError:
        return None
    mid = obj.get("message_id") if isinstance(obj, dict) else None
    return mid if isinstance(mid, str) else None
