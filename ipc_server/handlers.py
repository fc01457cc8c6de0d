"""In-process handlers: one call per request, answered exactly once, by
the handler, its deadline or shutdown, whichever comes first
(docs/protocol.md §6.2, §6.3, §6.5).

``async def`` handlers run on the loop, as generator functions are called
(that runs none of their code); plain functions in a thread of the
server's own (``HANDLER_THREADS``), so a slow one never blocks other clients. A handler's result or exception
becomes the reply through ``ipc_protocol.replies``, as a client responder's
does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipc_client.at_once import AtOnce, HandlerCancelled, propagates, result_of
from ipc_client.handler_threads import HandlerThreads
from ipc_protocol import LOG_TEXT_LIMIT, ErrorCode, ErrorInfo, Message, clipped
from ipc_protocol.attachments import with_bytes
from ipc_protocol.framing import frame_parts
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.messages import error_info_from_exception, error_response
from ipc_protocol.replies import failure_reply, handler_reply
from ipc_protocol.envelope import REQUEST as _REQUEST, RESPONSE as _RESPONSE

from .connection import ServerConnection
from .eager import EAGER, start_eagerly
from .log_limits import allow_line
from .router import Handler
from .shutdown import Shutdown
from .stats import ServerStats
from .stream_producers import STREAM_RESULTS

if TYPE_CHECKING:
    from .streams import Streams

__all__ = ["HANDLER_THREADS", "HandlerCall", "HandlerCalls"]

log = logging.getLogger("ipc_server")

# Plain handlers and plain generators' ``next()`` running at once, each in
# a thread of its own (README, docs/protocol.md §6.2). The loop's default
# executor had min(32, cpus + 4): 6 on two cores, so 12 handlers blocking
# 1 s took 2 s, and handlers waiting on other in-process calls starved.
# As the client's ``max_concurrent_handlers`` default and one connection's
# ``max_inflight_per_connection``: threads are made as needed, end idle.
HANDLER_THREADS = 1024

class HandlerCall:
    """One request being answered by an in-process handler."""

    __slots__ = ("conn", "request", "task", "answered", "started", "stopping", "finished", "received")

    def __init__(self, conn: ServerConnection, request: Message) -> None:
        self.conn = conn
        self.request = request
        self.received = conn.read_at  # when it was read (request metrics, docs/operations.md)
        self.task: asyncio.Task[None] | None = None
        self.answered = False
        self.started = False  # its task began: its ``finally`` closes the books
        self.stopping = False  # cancelled once: its cleanup (a finally, a generator's aclose) runs to its end
        self.finished = False

    def answer(self, reply: Message) -> None:
        """Answer with ``reply`` unless answered already (raises, before
        queueing, if it cannot be encoded)."""
        if self.answered:
            return
        if self.request.message_type is _REQUEST:
            conn = self.conn
            # The connection's only request in flight: no other answer can
            # join it, so it goes out now rather than after the books close.
            conn.send(reply, at_once=conn.inflight.count == 1)
            if conn.owner.stats.timing is not None:  # metrics on (request_metrics)
                conn.owner.stats.timing.answered(conn.app_id, self.request.channel_id, reply.error.code if reply.error else "ok", self.received)
        elif reply.error is not None:
            if allow_line(self.conn, "notification handler failed", log):  # at most a few lines a connection (log_limits)
                log.warning("notification handler for '%s' failed: %s", clipped(self.request.channel_id), failure_text(reply.error))
        self.answered = True


def failure_text(error: ErrorInfo) -> str:
    """``Type: message`` of a handler's failure, for its one log line."""
    text = clipped(error.message, LOG_TEXT_LIMIT)
    return f"{clipped(error.remote_type)}: {text}" if error.remote_type else text


class HandlerCalls:
    """The handler calls in progress, their deadlines, their cancellation.

    ``loop`` is the server's, set when it starts; ``threads`` run the
    plain handlers and generators (stopped by :meth:`shut_down`).
    """

    def __init__(self, stats: ServerStats, shutdown: Shutdown, *, include_stack: bool, default_timeout_s: float | None = None) -> None:
        self._stats = stats
        # A request without a deadline (version 1) gets the server's (§6.5, §12).
        self._default_timeout_s = default_timeout_s
        self._shutdown = shutdown
        self._include_stack = include_stack
        self.calls: set[HandlerCall] = set()
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._at_once: AtOnce = None  # type: ignore[assignment]  # with the loop
        self.threads = HandlerThreads("ipc-handler", HANDLER_THREADS)
        self.streams: Streams | None = None  # set by the server (streams.Streams, §15)
        self._threads: set[HandlerCall] = set()  # calls whose sync handler runs in a worker thread
        # One loop timer for every handler deadline (§6.5).
        self._deadlines: Deadlines[HandlerCall] = Deadlines(
            self._expired, clock=self._loop_time, call_at=self._call_at, resolution=ASYNCIO_RESOLUTION_S
        )

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._at_once = AtOnce(loop)

    def run(self, conn: ServerConnection, msg: Message, handler: Handler) -> None:
        """Start answering ``msg`` from ``conn`` with ``handler``."""
        if msg.attachments is not None:  # handlers get bytes, not views of the frame (§16.4)
            msg = msg.model_copy(update={"payload": with_bytes(msg.payload, msg.attachments)})
        if type(conn.handler_calls) is not set:  # the first (ServerConnection)
            conn.handler_calls = set()
        if handler.never_waits and self._at_once.possible():  # Python 3.11 (ipc_client.at_once)
            self._at_once.run(self._call_at_once, conn, msg, handler.fn)
        else:
            conn.inflight.started()
            call = self._tracked(conn, msg)
            if msg.window is not None and msg.message_type is _REQUEST and self.streams is not None:
                self.streams.expect(call)  # a credit sent right behind the request counts (stream_producers)
            self._watch_deadline(call)
            # Bookkeeping first: the call starts at once and may finish (and be
            # answered) before start_eagerly returns; only one that waits gets a task.
            call.task = start_eagerly(self.loop, self._call(call, handler))
        conn.expect_answers()

    def _tracked(self, conn: ServerConnection, msg: Message) -> HandlerCall:
        """A call that outlives this step: where a deadline, a cancel, a
        closing connection and shutdown find it."""
        call = HandlerCall(conn, msg)
        self.calls.add(call)
        conn.handler_calls.add(call)
        return call

    def _watch_deadline(self, call: HandlerCall) -> None:
        msg = call.request
        # A stream without timeout_ms has no whole-stream deadline, only its idle timeout (§15.5).
        timeout_s = msg.timeout_ms / 1000.0 if msg.timeout_ms is not None else self._default_timeout_s if msg.window is None else None
        if timeout_s is not None:
            # Nearly every request has a deadline: they share one timer.
            self._deadlines.add(call, self.loop.time() + timeout_s)

    async def _call(self, call: HandlerCall, handler: Handler) -> None:
        call.started = True
        msg = call.request
        try:
            try:
                if handler.is_async:
                    result = await handler.fn(msg)
                elif handler.generates:  # making a generator runs none of its code: no thread (at_once.makes_generator)
                    if EAGER:  # this step runs in the read of the request: a credit or cancel right behind it counts first
                        await asyncio.sleep(0)
                    result = handler.fn(msg)
                else:
                    self._threads.add(call)  # a cancel cannot stop it: its result is dropped and counted (§15.4)
                    try:
                        result = await asyncio.wrap_future(self.threads.submit(handler.fn, msg), loop=self.loop)
                    finally:
                        self._threads.discard(call)
                streams = self._streams(result)
            except asyncio.CancelledError:
                self._cancelled(call)
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is answered (§6.3)
                self._failed(call, exc)
            except BaseException as exc:  # GeneratorExit, a library's own: answered too
                if propagates(exc):
                    raise
                self._failed(call, exc)
            else:
                if streams and self.streams is not None:  # a generator streams (§15.6)
                    await self.streams.produce(call, result)
                elif msg.message_type is _REQUEST:
                    self._reply(call, result, None)
        finally:
            # In the task itself rather than a done callback: one loop
            # iteration and one callback less per request.
            self._finished(call)

    def _call_at_once(self, conn: ServerConnection, msg: Message, fn: Callable[..., Any]) -> None:
        """``_call`` for a handler that never waits, run by ``AtOnce``. It
        has finished when this returns, and nothing else runs meanwhile (no
        deadline, cancel, closing connection or shutdown can come first), so
        it needs no ``HandlerCall``: only a stream it returns is held, with
        a task and its deadline (docs/performance.md, "A handler that
        never waits holds no call")."""
        inflight = conn.inflight
        inflight.started()
        streaming = False
        try:
            try:
                result = result_of(fn(msg))
                streams = self._streams(result)
            except asyncio.CancelledError:
                self._answer(conn, msg, conn.read_at, None, HandlerCancelled(msg.channel_id))
            except Exception as exc:  # noqa: BLE001 - every failure is answered (§6.3)
                self._answer(conn, msg, conn.read_at, None, exc)
            except BaseException as exc:  # GeneratorExit, a library's own: answered too
                if propagates(exc):
                    raise
                self._answer(conn, msg, conn.read_at, None, exc)
            else:
                if streams and self.streams is not None:  # a generator streams (§15.6)
                    call = self._tracked(conn, msg)  # counted in flight already: its _finished closes the books
                    if msg.window is not None and msg.message_type is _REQUEST:
                        self.streams.expect(call)
                    self._watch_deadline(call)
                    call.task = start_eagerly(self.loop, self._stream(call, result))
                    streaming = True
                elif msg.message_type is _REQUEST:
                    self._answer(conn, msg, conn.read_at, result, None)
        finally:
            if not streaming:
                inflight.finished()
                if self._shutdown.draining:
                    self._shutdown.check_drained()

    @staticmethod
    def _streams(result: Any) -> bool:
        """Whether a handler's result is a generator (§15.6). Reading it can
        raise (a proxy's ``__class__``): called where the handler's own
        failures are caught, so that is answered as one."""
        return result.__class__ in STREAM_RESULTS

    async def _stream(self, call: HandlerCall, gen: Any) -> None:
        call.started = True  # stopped before this (a cancel right behind it), stop() closes the books
        try:
            await self.streams.produce(call, gen)  # type: ignore[union-attr]  # set whenever a stream is started
        except asyncio.CancelledError:
            self._cancelled(call)  # as _call: answered, unless what cancelled it answered already
            raise
        finally:
            self._finished(call)

    def _failed(self, call: HandlerCall, exc: BaseException) -> None:
        if call.request.message_type is _REQUEST:
            self._reply(call, None, exc)
        else:
            call.answer(self._failure(call.conn, call.request, exc))

    def _cancelled(self, call: HandlerCall) -> None:
        """The handler was cancelled, or raised ``CancelledError`` itself:
        unless a deadline, a cancel or shutdown settled the call already, its
        requester is told (every request ends in one answer, §6.3)."""
        if not call.answered:
            self._failed(call, HandlerCancelled(call.request.channel_id))

    def _reply(self, call: HandlerCall, result: Any, failure: BaseException | None) -> None:
        """Answer a request with its handler's outcome, once."""
        if call.answered:  # the deadline or a cancel came first
            self._late(call.conn, call.request, failure)
            return
        call.answered = True
        self._answer(call.conn, call.request, call.received, result, failure)

    def _answer(self, conn: ServerConnection, request: Message, received: float, result: Any, failure: BaseException | None) -> None:
        """A handler's outcome, unanswered until now: a request's answer, a
        notification's failure logged (§6.3)."""
        if request.message_type is not _REQUEST:
            if failure is not None:
                error = self._failure(conn, request, failure).error
                if allow_line(conn, "notification handler failed", log):  # at most a few lines a connection (log_limits)
                    log.warning("notification handler for '%s' failed: %s", clipped(request.channel_id), failure_text(error))  # type: ignore[arg-type]
            return
        if not conn.is_open:  # nobody will read it
            self._late(conn, request, failure)
            return
        body, error = handler_reply(request, result, failure, legacy=conn.legacy, include_stack=self._include_stack)
        if error is not None:
            self._count_failure(conn, request, error)
        if conn.send_frame(frame_parts(body), at_once=conn.inflight.count == 1):
            conn.traffic.sent[_RESPONSE] += 1
        if self._stats.timing is not None:  # metrics on (request_metrics)
            self._stats.timing.answered(conn.app_id, request.channel_id, error.code if error is not None else "ok", received)

    def _late(self, conn: ServerConnection, request: Message, failure: BaseException | None) -> None:
        """An answer nobody will read: dropped and counted (§15.4)."""
        self._stats.late_answers += 1
        if failure is not None:
            self._count_failure(conn, request, error_info_from_exception(failure, include_stack=False))

    def fail(self, call: HandlerCall, exc: BaseException) -> None:
        """Answer ``call`` with its handler's failure (a stream's, mid-stream), once."""
        if not call.answered:
            call.answer(self._failure(call.conn, call.request, exc))

    def cancel(self, call: HandlerCall) -> None:
        """The requester gave up (a cancel, §15.4): no answer; an async
        handler is cancelled, a sync one's result will be dropped (a
        generator it returns closed unstreamed: ``LocalProducers.produce``)."""
        call.answered = True
        if call not in self._threads:  # a sync handler finishes in its thread; _reply drops its result
            self.stop(call)

    def _failure(self, conn: ServerConnection, msg: Message, exc: BaseException) -> Message:
        reply = failure_reply(msg, exc, include_stack=self._include_stack)
        # A notification's failure is logged once, by its WARNING line (one event, one line).
        self._count_failure(conn, msg, reply.error, say=msg.message_type is _REQUEST)  # type: ignore[arg-type]
        return reply

    def _count_failure(self, conn: ServerConnection, msg: Message, error: ErrorInfo, say: bool = True) -> None:
        self._stats.count_error(error.code)
        if say and error.code == ErrorCode.HANDLER_ERROR and allow_line(conn, "handler raised", log):  # a few lines a connection (log_limits)
            log.info("handler for '%s' raised %s: %s", clipped(msg.channel_id), clipped(error.remote_type), clipped(error.message, LOG_TEXT_LIMIT))

    def _expired(self, call: HandlerCall) -> None:
        """The request's deadline passed (§6.5): answer ``timeout`` now, cancel
        an async handler; a sync one finishes in its thread, its result dropped."""
        self._stats.count_error(ErrorCode.TIMEOUT)
        timeout_ms = call.request.timeout_ms
        within = f"{timeout_ms:g} ms" if timeout_ms is not None else f"the server's default deadline of {self._default_timeout_s:g} s"
        call.answer(error_response(call.request, ErrorCode.TIMEOUT, f"the handler did not finish within {within}"))
        self.stop(call)

    def stop(self, call: HandlerCall) -> None:
        """Cancel a handler whose answer is settled or unwanted. A running
        one still counts (in-flight limit, shutdown grace) until its
        ``finally`` has run; one cancelled before its first step never runs
        it, so its books close here. Once only: a second cancel (the
        connection's close after a cancel frame, or close() after the
        deadline) would cut the handler's own cleanup short."""
        if call.stopping:
            return
        call.stopping = True
        if call.task is not None:
            call.task.cancel()
        if not call.started:
            self._finished(call)

    def connection_closed(self, conn: ServerConnection) -> None:
        """Nobody will read the answers of the handlers answering ``conn``."""
        for call in list(conn.handler_calls):
            self.stop(call)

    def shut_down(self) -> None:
        """Answer every call still running ``shutting_down`` and cancel it (§13)."""
        for call in list(self.calls):
            call.answer(error_response(call.request, ErrorCode.SHUTTING_DOWN, "the server is shutting down"))
            self.stop(call)

    def _finished(self, call: HandlerCall) -> None:
        if call.finished:
            return
        call.finished = True
        self.calls.discard(call)
        self._deadlines.discard(call)
        if call.request.window is not None and self.streams is not None:
            self.streams.forget(call)
        call.conn.handler_calls.discard(call)
        call.conn.inflight.finished()
        if self._shutdown.draining:
            self._shutdown.check_drained()

    def _loop_time(self) -> float:
        return self.loop.time()

    def _call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_at(when, callback)
