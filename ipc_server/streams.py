"""Streams and cancellation on the server (docs/protocol.md §15).

Relayed streams live in the forwarding table (``forwarding``), one entry
per open stream (a request with ``window``), and here a :class:`StreamState`
by the same key: the credits the consumer granted less the items relayed, and the idle
clock. Each frame is relayed at once, so the server holds no more of a
stream than its items in flight; an item beyond the credit, or a grant
past ``MAX_WINDOW``, fails the stream ``bad_message``. The entry ends,
once, through ``Forwarding``: by the producer's end or error, the
consumer's cancel (:meth:`Forwarding.withdraw`), the deadline, the idle
timeout, or either connection's loss.

In-process handlers that are generators are run by the
:class:`~ipc_server.stream_producers.LocalProducers` this class is made
of (``stream_producers``): their stream is known from the moment the
request is routed, so a credit sent right behind it counts.

Cancel frames from requesters stop whoever runs the request: an
in-process call is cancelled (``HandlerCalls.cancel``), a forwarded one
withdrawn and its responder sent ``cancel`` when it was granted the
feature (:meth:`Streams.cancel_responder`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ipc_protocol import LOG_TEXT_LIMIT, ErrorCode, IPCError, Message, MessageType, clipped, encode_message
from ipc_protocol.envelope import encode_message_parts
from ipc_protocol.framing import encode_frame, frame_parts
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.messages import error_response
from ipc_protocol.streams import CANCEL, STREAMS, cancel, cancel_reason

from .connection import ServerConnection
from .stats import ServerStats
from .stream_producers import LocalProducers, send_item
from .stream_state import StreamState

if TYPE_CHECKING:
    from .forwarding import Forwarded, Forwarding
    from .grace import Grace
    from .handlers import HandlerCalls

__all__ = ["Streams"]

log = logging.getLogger("ipc_server")

_Key = tuple[ServerConnection, str]


class Streams(LocalProducers):
    """The server's side of §15: relaying, in-process producers, cancels.

    Wired by the server: it sets ``forwarding.streams`` and ``calls.streams``
    to itself, and routes every ``stream_item``, ``stream_end``, ``credit``
    and ``cancel`` to :meth:`frame`."""

    def __init__(self, stats: ServerStats, forwarding: Forwarding, calls: HandlerCalls, grace: Grace, *, default_idle_s: float | None) -> None:
        self._stats = stats
        self._forwarding = forwarding
        self._calls = calls
        self._grace = grace  # requests held for a responder (§13.2): a cancel drops them too
        self._default_idle_s = default_idle_s
        forwarding.streams = calls.streams = self
        # Relayed streams by forwarding key, and that key by (consumer, its request id).
        self._states: dict[_Key, StreamState] = {}
        self._relayed: dict[_Key, _Key] = {}
        # In-process streams by (consumer, its request id).
        self._local: dict[_Key, StreamState] = {}
        self._idle: Deadlines[StreamState] = Deadlines(self._idle_passed, clock=self._now, call_at=self._call_at, resolution=ASYNCIO_RESOLUTION_S)

    def __len__(self) -> int:
        return len(self._states) + len(self._local)

    # -- frames from connections ------------------------------------------------

    def frame(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        """A frame of §15.2 (the protocol checked it was granted and well formed)."""
        mtype = msg.message_type
        if mtype is MessageType.STREAM_ITEM:
            self._item(conn, msg, body)
        elif mtype is MessageType.CREDIT:
            self._credit(conn, msg, body)
        elif mtype is MessageType.CANCEL:
            self._cancel(conn, msg)
        else:
            self._end(conn, msg, body)

    def _item(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        key = (conn, msg.reply_to)
        fwd = self._forwarding.table.get(key)  # type: ignore[arg-type]
        if fwd is None:  # its stream ended (cancelled, timed out): dropped (§15.4)
            self._stats.late_answers += 1
            return
        state = self._states.get(key)  # type: ignore[arg-type]
        if state is None:
            self.fail(key, fwd, ErrorCode.BAD_MESSAGE, "the responder streamed items to a request that is not a stream")  # type: ignore[arg-type]
            return
        if not state.credit.take():
            self.fail(key, fwd, ErrorCode.BAD_MESSAGE, "the producer sent an item beyond the credit it was granted")  # type: ignore[arg-type]
            return
        requester = fwd.requester
        frame = frame_parts(body if fwd.verbatim else encode_message_parts(msg.model_copy(update={"reply_to": fwd.request.message_id})))  # §16.4
        if not requester.fits(frame):
            self.fail(key, fwd, ErrorCode.TOO_LARGE, f"an item ({len(frame) - 4} bytes) is larger than the consumer accepts")  # type: ignore[arg-type]
            return
        send_item(requester, frame)
        self._stats.stream_items += 1
        state.last = self._now()

    def _end(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        key = (conn, msg.reply_to)
        fwd = self._forwarding.table.get(key)  # type: ignore[arg-type]
        if fwd is None:
            self._stats.late_answers += 1
        elif fwd.request.window is None:
            self.fail(key, fwd, ErrorCode.BAD_MESSAGE, "the responder ended a stream for a request that is not a stream")  # type: ignore[arg-type]
        else:
            self._forwarding.finish(key, msg, body if fwd.verbatim else None)  # type: ignore[arg-type]

    def _credit(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        rid: str = msg.reply_to  # type: ignore[assignment]
        grant: int = msg.window  # type: ignore[assignment]
        key = self._relayed.get((conn, rid))
        if key is not None:
            fwd = self._forwarding.table[key]
            if not self._states[key].granted(grant, self._now()):
                self.fail(key, fwd, ErrorCode.BAD_MESSAGE, "credit granted past 2^31-1 items")
                return
            responder = fwd.responder
            if STREAMS in responder.protocol.features:  # end to end: the producer counts it too
                if not fwd.verbatim:
                    body = encode_message(msg.model_copy(update={"reply_to": key[1], "app_id": responder.app_id}))
                responder.send_frame(encode_frame(body))
            return
        state = self._local.get((conn, rid))  # known from its routing on (stream_producers.expect)
        if state is not None and not state.granted(grant, self._now()):
            self._expire_local(state, ErrorCode.BAD_MESSAGE, "credit granted past 2^31-1 items")
        # Else the stream has ended: a grant crossing its end is nothing.

    def _cancel(self, conn: ServerConnection, msg: Message) -> None:
        """The requester gave up (§15.4): stop whoever runs or holds the request; no answer."""
        self._stats.cancels += 1
        rid: str = msg.reply_to  # type: ignore[assignment]
        reason = cancel_reason(msg)
        forwarding = self._forwarding
        key = self._relayed.get((conn, rid))
        if key is None:  # a plain request (rare: a look through what this connection waits on)
            key = next((k for k in conn.awaiting if (f := forwarding.table.get(k)) is not None and f.request.message_id == rid), None)
        if key is not None:
            forwarding.withdraw(key, reason)
            return
        state = self._local.get((conn, rid))
        call = state.call if state is not None else next((c for c in conn.handler_calls if c.request.message_id == rid), None)
        if call is not None:
            self._calls.cancel(call)
        else:
            self._grace.cancelled(conn, rid)

    # -- relayed streams: the forwarding table's hooks -----------------------------------

    def opened(self, key: _Key, fwd: Forwarded) -> None:
        """A stream request was forwarded (``Forwarding.forward``)."""
        msg = fwd.request
        state = StreamState(msg.window, self._idle_of(msg), self._now())  # type: ignore[arg-type]
        state.key = key
        self._states[key] = state
        self._relayed[(fwd.requester, msg.message_id)] = key
        self._watch(state)
        self._stats.streams_opened += 1
        self._stats.streams += 1

    def closed(self, key: _Key, fwd: Forwarded) -> None:
        """The entry of a relayed stream is gone (``Forwarding``): once."""
        state = self._states.pop(key, None)
        if state is not None:
            del self._relayed[(fwd.requester, fwd.request.message_id)]
            self._idle.discard(state)
            self._stats.streams -= 1

    def fail(self, key: _Key, fwd: Forwarded, code: ErrorCode, text: str) -> None:
        """End a relayed request with an error of the server's; cancel its producer."""
        self._stats.count_error(code)
        log.info("stream %s on '%s' failed: %s: %s", clipped(fwd.request.message_id), clipped(fwd.request.channel_id), code, clipped(text, LOG_TEXT_LIMIT))
        self._forwarding.finish(key, error_response(fwd.request, code, text))
        self._forwarding.retire(key)
        self.cancel_responder(fwd.responder, key[1], fwd.request, code)

    @staticmethod
    def cancel_responder(responder: ServerConnection, sid: str, request: Message, reason: ErrorCode | str) -> None:
        """Tell a responder to stop a request forwarded to it as ``sid``,
        when it was granted ``cancel`` (§15.1 item 4)."""
        if CANCEL in responder.protocol.features:
            try:
                responder.send(cancel(responder.app_id, request.channel_id, sid, reason))
            except IPCError:  # pragma: no cover - a cancel always encodes
                log.exception("cannot send a cancel")

    # -- idle timeouts (§15.5) -------------------------------------------------------------

    def _idle_of(self, msg: Message) -> float | None:
        return msg.idle_timeout_ms / 1000.0 if msg.idle_timeout_ms is not None else self._default_idle_s

    def _watch(self, state: StreamState) -> None:
        if state.idle_s is not None:
            self._idle.add(state, state.last + state.idle_s)

    def _idle_passed(self, state: StreamState) -> None:
        now = self._now()
        idle = state.idle_s
        assert idle is not None
        if state.credit.available == 0 or state.paused:  # the consumer's turn: the clock stops
            self._idle.add(state, now + idle)
            return
        if now - state.last < idle:
            self._idle.add(state, state.last + idle)
            return
        text = f"no item within the idle timeout of {idle * 1000:g} ms"
        if state.call is not None:
            self._expire_local(state, ErrorCode.TIMEOUT, text)
            return
        key = state.key
        fwd = self._forwarding.table.get(key) if key is not None else None
        if fwd is not None:
            self.fail(key, fwd, ErrorCode.TIMEOUT, text)  # type: ignore[arg-type]

    def _now(self) -> float:
        return self._forwarding.loop.time()

    def _call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._forwarding.loop.call_at(when, callback)
