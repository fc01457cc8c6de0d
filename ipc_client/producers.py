"""The responder's side of streams and cancellation (docs/protocol.md §15):
served requests that a ``cancel`` can stop, and handlers that stream.

Every served request is registered from its task's creation until its
handler ends (its task's admission slot, by the id it was sent under), so a
``cancel`` cancels that task: the handler sees ``asyncio.CancelledError``.
An answer it produces anyway is not sent (the server no longer waits for
it) and is counted in ``late_answers``. A task whose first step has not run
yet (a ``cancel`` read with its request) is not cancelled, since then it would
never run the ``finally`` that frees its slot: the cancel is noted, and its
first step ends it with the handler unrun (a stream's generator closed).

A handler that returns a generator (``async def`` with ``yield``, run on the
loop; a plain generator, one ``next()`` at a time in one of the client's
handler threads, ``handler_threads``) streams
its items: one is pulled only while credit remains (the request's
``window`` plus every ``credit`` since), so the generator never runs ahead
of its consumer; the end is ``stream_end``, a failure an error response.
A stream request's credit is counted from its arrival (:meth:`Producers.expect`),
before its handler runs (or while it waits for a handler slot), so a
``credit`` the server relays right behind the request is never lost. The
producer waits while the connection's transport is over its high-water
mark, and lets the loop run other work after ``SLICE_ITEMS`` items in a
row or ``SLICE_S`` seconds, so a generator that never waits does not hold
up the client's other work (its pings, credits, cancels, other handlers).
A cancel, the connection's loss or ``disconnect()`` cancels the task
(once: whichever comes first; the handler's cleanup then runs to its end)
and closes the generator (``aclose()`` / ``close()``).

Host interface: :meth:`expect` when a served request arrives,
:meth:`started` when its task is created, :meth:`finished` when it ends (``answering``),
:meth:`forget` for one dropped unrun, :meth:`on_frame` for ``credit`` and
``cancel`` (``lifecycle``), :meth:`connection_lost`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import types
from collections.abc import Callable
from typing import Any

from ipc_protocol import Cancelled, ErrorCode, IPCError, Message, MessageType
from ipc_protocol.messages import error_response
from ipc_protocol.replies import handler_reply
from ipc_protocol.streams import SLICE_ITEMS, SLICE_S, STREAMS, Credit, cancel_reason, stream_end, stream_item

from .admission import Slot
from .at_once import answered_as
from .connection import ClientConnection
from .handler_threads import HandlerThreads
from .streams import Stream

__all__ = ["Producers", "STREAM_RESULTS", "streams_answer"]

log = logging.getLogger("ipc_client")

# What a handler returns when it streams (§15.6); a client's Stream relays another stream.
STREAM_RESULTS = frozenset({types.AsyncGeneratorType, types.GeneratorType, Stream})


def streams_answer(result: Any) -> bool:
    """Whether a handler's result streams its answer (§15.6). Reading it can
    raise (a proxy's ``__class__``, an unbound ``LocalProxy``'s): called
    where the handler's own failures are caught, so that is answered as one."""
    return result.__class__ in STREAM_RESULTS
_END = object()  # next()'s default: the sync generator is exhausted


class _Producing:
    """One stream this client produces: its credit, and who waits for more."""

    __slots__ = ("conn", "credit", "waiter", "task")

    def __init__(self, conn: ClientConnection, window: int, task: asyncio.Task[Any] | None) -> None:
        self.conn = conn
        self.credit = Credit(window)
        self.waiter: asyncio.Future[None] | None = None
        self.task = task

    def grant(self, n: int) -> None:
        if not self.credit.grant(n):  # past 2^31-1: the server fails the stream and cancels us
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Producers:
    """Served requests by id, and the streams among them."""

    def __init__(self, expose_stacks: bool, threads: HandlerThreads) -> None:
        self.expose_stacks = expose_stacks
        self.threads = threads  # where plain handlers and generators run (Admission's)
        self.running: dict[str, Slot] = {}  # request id -> its handler task's slot
        self.cancelled: set[str] = set()  # ids a cancel named while their handler ran
        self.late_answers = 0  # answers not sent: the requester had given up
        self.unheld: Callable[[str], None] | None = None  # drops a held request a cancel names (admission)
        self._producing: dict[str, _Producing] = {}

    def __len__(self) -> int:
        return len(self._producing)

    # -- every served request ------------------------------------------------------

    def started(self, msg: Message, slot: Slot) -> None:
        self.running[msg.message_id] = slot

    def finished(self, msg: Message) -> None:
        mid = msg.message_id
        if self.running.pop(mid, None) is not None and self.cancelled:
            self.cancelled.discard(mid)
        if msg.window is not None:
            self.forget(msg)

    def expect(self, conn: ClientConnection, msg: Message) -> None:
        """A served request arrived: if it opens a stream, its credit counts
        from now on, whatever its handler returns and however long it waits
        for a handler slot (§15.3)."""
        if msg.window is not None and msg.message_type is MessageType.REQUEST and STREAMS in conn.proto.features:
            self._producing[msg.message_id] = _Producing(conn, msg.window, None)

    def forget(self, msg: Message) -> None:
        """``msg``'s handler ended, or it was dropped unrun: its stream's books go."""
        producing = self._producing.get(msg.message_id)
        if producing is not None and producing.task is None:  # one that streamed removed itself (produce)
            del self._producing[msg.message_id]

    def given_up(self, msg: Message) -> bool:
        """Whether a cancel named ``msg`` (its answer is then dropped and counted)."""
        if self.cancelled and msg.message_id in self.cancelled:
            self.late_answers += 1
            return True
        return False

    def count_late(self) -> None:
        """One more answer dropped because a cancel named its request (a
        plain handler's, once its thread ended: ``answering``)."""
        self.late_answers += 1

    def on_frame(self, conn: ClientConnection, msg: Message) -> None:
        """A ``credit`` or ``cancel`` from the server for a request we serve."""
        rid: str = msg.reply_to  # type: ignore[assignment]  # the protocol checked it is set
        if msg.message_type is MessageType.CREDIT:
            producing = self._producing.get(rid)
            if producing is not None:
                producing.grant(msg.window)  # type: ignore[arg-type]
            return
        slot = self.running.get(rid)
        if slot is None:  # not started: one held for a slot is dropped (Admission.drop_held)
            if self.unheld is not None:
                self.unheld(rid)
            return
        if slot and not slot[0].cancelling():  # running: stop it (a cancel of what has ended is nothing, §15.4)
            self.cancelled.add(rid)
            task = slot[0]
            if not _unstarted(task):  # else its first step sees the cancel (answering)
                task.cancel(f"the requester gave up ({cancel_reason(msg)})")

    def connection_lost(self) -> None:
        """Nobody will grant credit again: stop every stream (plain handlers
        finish, their answers unsent as before, and no cancel of a later
        connection reaches them: a keyed run goes on for its resend, keyed_runs)."""
        self.running.clear()
        for mid, producing in list(self._producing.items()):
            if producing.task is None:  # not streaming yet: its handler finishes, unanswered
                del self._producing[mid]
            elif not producing.task.cancelling():  # once: its cleanup runs to its end
                producing.task.cancel("the connection was lost")
        self.cancelled.clear()

    # -- streams (§15.6) ---------------------------------------------------------------

    async def produce(self, conn: ClientConnection, msg: Message, gen: Any) -> BaseException | None:
        """Stream the items of ``gen``, answering ``msg``; runs in its handler's task.
        Returns how it ended, for the serve span (docs/tracing.md §4): None, the
        handler's failure, or ``Cancelled`` when the connection's loss stopped it
        (a cancel cancels the task: its ``CancelledError`` propagates)."""
        if gen.__class__ is Stream:
            gen = gen.generator
        is_async = gen.__class__ is types.AsyncGeneratorType
        if self.cancelled and msg.message_id in self.cancelled:  # before its task's first step (on_frame): never streams
            await _close(gen, is_async, None)
            return Cancelled("cancelled by its requester")
        if msg.window is None or msg.message_type is not MessageType.REQUEST or STREAMS not in conn.proto.features:
            await _close(gen, is_async, None)
            if msg.message_type is MessageType.REQUEST and conn.is_open:
                text = f"the handler of {msg.channel_id!r} streams its answer: call stream()"
                conn.send(error_response(msg, ErrorCode.BAD_REQUEST, text))
            return None
        loop = asyncio.get_running_loop()
        producing = self._producing.get(msg.message_id)
        if producing is None or producing.conn is not conn:  # not expected: counted from now
            producing = self._producing[msg.message_id] = _Producing(conn, msg.window, None)
        producing.task = asyncio.current_task()
        pull = None if is_async else _SyncPull(gen)
        run, slice_ends = 0, loop.time() + SLICE_S  # items sent since the loop last ran other work
        try:
            while True:
                if producing.credit.available == 0:
                    while producing.credit.available == 0:
                        producing.waiter = loop.create_future()
                        await producing.waiter
                    run, slice_ends = 0, loop.time() + SLICE_S
                if is_async:
                    try:
                        item = await gen.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    item = await asyncio.wrap_future(self.threads.submit(contextvars.copy_context().run, pull.next), loop=loop)  # type: ignore[union-attr]
                    if item is _END:
                        break
                try:
                    frame = conn.frame(stream_item(msg, item))
                except IPCError as exc:  # an item that cannot be sent: the handler's failure
                    raise ValueError(f"an item of the stream cannot be sent: {exc}") from None
                if not conn.is_open:
                    return Cancelled("the stream was stopped before its end: the connection was lost")
                producing.credit.take()
                conn.write(frame)
                run += 1
                if conn.writing_paused:
                    await conn.drain()
                elif run < SLICE_ITEMS and loop.time() < slice_ends:
                    continue
                else:
                    await asyncio.sleep(0)  # a generator that never waits holds up nothing (§15.6)
                run, slice_ends = 0, loop.time() + SLICE_S
            if conn.is_open:
                conn.send(stream_end(msg))
            return None
        except BaseException as exc:  # noqa: BLE001 - every failure ends the stream with an error (§15.3)
            failure = exc if isinstance(exc, Exception) else answered_as(exc, msg.channel_id)
            if failure is None:  # its task was cancelled, or the program ends
                raise
            if conn.is_open and not self.given_up(msg):
                body, _ = handler_reply(msg, None, failure, legacy=False, include_stack=self.expose_stacks)
                conn.write(conn.frame_body(body))
            return failure
        finally:
            if self._producing.get(msg.message_id) is producing:
                del self._producing[msg.message_id]
            await _close(gen, is_async, pull)


def _unstarted(task: asyncio.Task[Any]) -> bool:
    """Whether ``task``'s first step has yet to run: cancelled now, it would
    never run its ``finally`` (answering's tasks run coroutines)."""
    coro = task.get_coro()
    return isinstance(coro, types.CoroutineType) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


class _SyncPull:
    """A sync generator pulled one ``next()`` at a time in worker threads.
    A thread cannot be interrupted, nor a running generator closed: closing
    while a ``next()`` runs leaves it to that thread, once it returns."""

    __slots__ = ("gen", "pulling", "closing", "_lock", "_closed")

    def __init__(self, gen: Any) -> None:
        self.gen = gen
        self.pulling = False
        self.closing = False
        self._lock = threading.Lock()
        self._closed = False

    def next(self) -> Any:  # in a worker thread
        self.pulling = True
        try:
            return next(self.gen, _END)
        finally:
            self.pulling = False
            if self.closing:
                self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.gen.close()
        except Exception:  # noqa: BLE001 - a generator failing to close is its own business
            log.exception("closing a stream's generator failed")


async def _close(gen: Any, is_async: bool, pull: _SyncPull | None) -> None:
    """Close a producer's generator (its ``finally`` runs)."""
    if pull is not None:
        pull.closing = True
        if not pull.pulling:
            pull.close()
        return
    try:
        if is_async:
            await gen.aclose()
        else:
            gen.close()
    except Exception:  # noqa: BLE001 - a generator failing to close is its own business
        log.exception("closing a stream's generator failed")
