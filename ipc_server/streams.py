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

In-process handlers that are generators (``async def`` ones on the loop,
plain ones one ``next()`` at a time in the worker threads) are run by
:meth:`Streams.produce` inside their handler call (``handlers``), so the
call's deadline, cancellation and shutdown apply as to any handler; they
pull an item only while credit remains.

Cancel frames from requesters stop whoever runs the request: an
in-process call is cancelled (``HandlerCalls.cancel``), a forwarded one
withdrawn and its responder sent ``cancel`` when it was granted the
feature (:meth:`Streams.cancel_responder`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipc_protocol import ErrorCode, IPCError, Message, MessageType, encode_message
from ipc_protocol.envelope import encode_message_parts
from ipc_protocol.framing import encode_frame, frame_parts
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.messages import error_response
from ipc_protocol.streams import CANCEL, STREAMS, Credit, cancel, cancel_reason, stream_end, stream_item

from .connection import ServerConnection
from .stats import ServerStats

if TYPE_CHECKING:
    from .forwarding import Forwarded, Forwarding
    from .grace import Grace
    from .handlers import HandlerCall, HandlerCalls

__all__ = ["Streams", "StreamState", "STREAM_RESULTS"]

log = logging.getLogger("ipc_server")

# What a handler returns when it streams (§15.6).
STREAM_RESULTS = frozenset({types.AsyncGeneratorType, types.GeneratorType})
_END = object()  # next()'s default: the sync generator is exhausted

_Key = tuple[ServerConnection, str]


class StreamState:
    """One open stream: its credit and its idle clock (§15.3, §15.5).
    ``key`` is the forwarding table's for a relayed stream; ``call`` the
    handler call of an in-process one."""

    __slots__ = ("credit", "idle_s", "last", "key", "call", "waiter")

    def __init__(self, window: int, idle_s: float | None, now: float) -> None:
        self.credit = Credit(window)
        self.idle_s = idle_s
        self.last = now  # the latest item, or grant after a stall
        self.key: _Key | None = None
        self.call: HandlerCall | None = None
        self.waiter: asyncio.Future[None] | None = None  # an in-process producer waiting for credit

    def granted(self, n: int, now: float) -> bool:
        """Add ``n`` credits; False past the maximum. A grant to a stalled
        producer restarts its idle clock (it was the consumer's turn)."""
        if self.credit.available == 0:
            self.last = now
        if not self.credit.grant(n):
            return False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True


class Streams:
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
        _send_item(requester, frame)
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
        state = self._local.get((conn, rid))
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
        log.info("stream %s on %r failed: %s: %s", fwd.request.message_id, fwd.request.channel_id, code, text)
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

    # -- in-process producers (§15.6) ----------------------------------------------------

    async def produce(self, call: HandlerCall, gen: Any) -> None:
        """Run a generator a handler returned, answering ``call``'s stream.
        Runs in the call's task: its deadline and cancellation apply."""
        msg = call.request
        is_async = gen.__class__ is types.AsyncGeneratorType
        if msg.window is None or msg.message_type is not MessageType.REQUEST:
            await _close(gen, is_async, None)
            text = f"the handler of {msg.channel_id!r} streams its answer: call stream()"
            call.answer(error_response(msg, ErrorCode.BAD_REQUEST, text))
            return
        loop = self._calls.loop
        conn = call.conn
        state = StreamState(msg.window, self._idle_of(msg), loop.time())
        state.call = call
        key = (conn, msg.message_id)
        self._local[key] = state
        self._watch(state)
        self._stats.streams_opened += 1
        self._stats.streams += 1
        running: concurrent.futures.Future[Any] | None = None  # a sync generator's next() in a thread
        try:
            while True:
                while state.credit.available == 0:
                    state.waiter = loop.create_future()
                    await state.waiter
                if is_async:
                    try:
                        item = await gen.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    assert self._calls.executor is not None
                    running = self._calls.executor.submit(next, gen, _END)
                    item = await asyncio.wrap_future(running, loop=loop)
                    running = None
                    if item is _END:
                        break
                try:
                    frame = frame_parts(encode_message_parts(stream_item(msg, item)))
                except IPCError as exc:  # an item that cannot be sent: the handler's failure
                    raise ValueError(f"an item of the stream cannot be sent: {exc}") from None
                if not conn.fits(frame):  # the server's refusal, as when relaying (§15.3 item 5), not the handler's failure
                    self._stats.count_error(ErrorCode.TOO_LARGE)
                    call.answer(error_response(msg, ErrorCode.TOO_LARGE, f"an item ({len(frame) - 4} bytes) is larger than the consumer accepts"))
                    return
                state.credit.take()
                _send_item(conn, frame)
                self._stats.stream_items += 1
                state.last = loop.time()
            call.answer(stream_end(msg))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure ends the stream with an error (§15.3)
            self._calls.fail(call, exc)
        finally:
            del self._local[key]
            self._idle.discard(state)
            self._stats.streams -= 1
            await _close(gen, is_async, running)

    def _expire_local(self, state: StreamState, code: ErrorCode, text: str) -> None:
        call = state.call
        assert call is not None
        self._stats.count_error(code)
        call.answer(error_response(call.request, code, text))
        self._calls.stop(call)

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
        if state.credit.available == 0:  # the consumer's turn: the clock stops
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


def _send_item(conn: Any, frame: Any) -> None:
    """An item to its consumer. A consumer on another node is the cluster's
    stand-in (``cluster.incoming.RemoteRequester``): it sends items apart
    from the request's one answer (docs/cluster.md §3, Streams)."""
    if conn.__class__ is not ServerConnection and (send_item := getattr(conn, "send_item", None)) is not None:
        send_item(frame)
    else:
        conn.send_frame(frame)


async def _close(gen: Any, is_async: bool, running: concurrent.futures.Future[Any] | None) -> None:
    """Close a producer's generator (its ``finally`` runs); a sync one still
    inside ``next()`` in its thread is closed by that thread once it returns
    (a thread cannot be interrupted, and a running generator not closed)."""
    try:
        if is_async:
            await gen.aclose()
        elif running is not None and not running.done():
            running.add_done_callback(lambda _: _close_sync(gen))
        else:
            gen.close()
    except Exception:  # noqa: BLE001 - a generator failing to close is its own business
        log.exception("closing a stream's generator failed")


def _close_sync(gen: Any) -> None:
    try:
        gen.close()
    except Exception:  # noqa: BLE001
        log.exception("closing a stream's generator failed")
