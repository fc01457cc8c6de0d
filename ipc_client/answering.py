"""The responders' side of :class:`~ipc_client.subscriptions.Subscriptions`:
running the handler a served request names (in a task, or at once on
Python 3.11 when it never waits), streaming what a generator yields, and
writing the one answer (docs/protocol.md §6.3, §15.6).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
from typing import TYPE_CHECKING, Any

from ipc_protocol import Cancelled, ErrorCode, FrameTooLarge, Message, pattern_matches
from ipc_protocol.envelope import REQUEST as _REQUEST
from ipc_protocol.messages import error_response
from ipc_protocol.replies import handler_reply

from .admission import Admission, Slot
from .at_once import HandlerCancelled, answered_as, is_async_function, makes_generator, propagates, result_of
from .connection import ClientConnection
from .keyed_runs import KeyedRun, KeyedRuns, is_keyed
from .producers import Producers, streams_answer
from .tracing import serving

if TYPE_CHECKING:
    from .subscriptions import Handler

__all__ = ["Answering"]


class Answering:
    """A base of :class:`~ipc_client.subscriptions.Subscriptions`: its
    served requests, from their arrival to their answer."""

    if TYPE_CHECKING:  # what Subscriptions holds
        services: dict[str, Handler]
        producers: Producers
        keyed: KeyedRuns
        expose_stacks: bool
        _admission: Admission
        _never_waits: set[str]

    def serve_request(self, conn: ClientConnection, msg: Message) -> None:
        """Run the responder of a request (or notification) in a handler task."""
        name = msg.channel_id  # what serves it: names its handler's kind, unhashed (_never_waits)
        fn = self.services.get(name)
        if fn is None:
            name, fn = next(((p, f) for p, f in self.services.items() if pattern_matches(p, msg.channel_id)), ("", None))
        if fn is None:
            if msg.message_type is _REQUEST:
                conn.send(error_response(msg, ErrorCode.NO_RESPONDERS, f"this client does not serve {msg.channel_id!r}"))
            return
        if msg.window is not None:  # a stream: a credit right behind the request counts (producers)
            self.producers.expect(conn, msg)
        admission = self._admission
        if len(admission.tasks) < admission.max_concurrent and not admission.held:
            if name in self._never_waits and admission.at_once.possible() and not is_keyed(msg):  # Python 3.11 (ipc_client.at_once)
                admission.at_once.run(self._answer_at_once, conn, msg, fn)
            else:  # admit()'s fast path, inline: every served request takes it
                slot = admission.run(self._answer, (conn, msg, fn))
                if slot:  # a cancel in this same read finds it (§15.4)
                    self.producers.started(msg, slot)
            return
        expires = None if msg.timeout_ms is None else admission.loop.time() + msg.timeout_ms / 1000  # type: ignore[union-attr]
        admission.admit(conn, self._answer, (conn, msg, fn), expires)

    async def _answer(self, slot: Slot, conn: ClientConnection, msg: Message, fn: Handler) -> None:
        """Run a served request's handler and write its answer (or its failure);
        a keyed request's through its run (keyed_runs), which it may join instead;
        not when the server scopes keys per user, which the key does not tell."""
        if self.producers.cancelled and msg.message_id in self.producers.cancelled:  # before this first step (Producers.on_frame)
            self._unrun(msg, slot)  # its handler never runs
            return
        run: KeyedRun | None = None
        if is_keyed(msg) and not conn.proto.keys_per_user:
            run = self.keyed.start(conn, msg)
            if run is None:  # answered by its key's run, or its kept answer
                self._unrun(msg, slot)
                return
        scope = serving(msg)  # its own calls continue the request's trace (docs/tracing.md)
        failure: BaseException | None
        try:
            try:
                if is_async_function(fn):
                    result = await fn(msg)
                elif makes_generator(fn):  # making it runs none of its code: no thread (at_once)
                    result = fn(msg)
                else:
                    result = await self._in_thread(slot, msg, fn)
                    if inspect.isawaitable(result):
                        result = await result
                streams = streams_answer(result)
            except Exception as exc:  # noqa: BLE001 - every failure is answered (§6.3)
                result, failure, streams = None, exc, False
            except BaseException as exc:
                result, failure, streams = None, answered_as(exc, msg.channel_id), False
                if failure is None:  # the task was cancelled (a cancel, the connection's loss), or the program ends
                    scope.end(_ended_by(exc))  # docs/tracing.md
                    if run is not None:
                        self.keyed.abandon(run)
                    raise
            else:
                failure = None
            if streams:  # a generator streams its answer (§15.6)
                if run is not None:  # not a stream request: answered bad_request, nothing to share
                    self.keyed.abandon(run)
                try:
                    failure = await self.producers.produce(conn, msg, result)
                except BaseException as exc:
                    failure = _ended_by(exc)
                    raise
                finally:
                    scope.end(failure)  # the stream's failure, or a cancel's (docs/tracing.md §4)
                return
            scope.end(failure)
            if run is None:
                self._reply(conn, msg, result, failure)
            else:
                self.keyed.finish(run, result, failure)
        finally:
            self.producers.finished(msg)
            self._admission.finished(slot)

    async def _in_thread(self, slot: Slot, msg: Message, fn: Handler) -> Any:
        """A plain handler's result, run in one of the client's handler
        threads (``handler_threads``). A cancel cannot stop the thread: an
        answer it gives anyway after its requester's cancel is dropped, and
        counted in ``late_answers`` once it comes (README, "Cancelling a call").
        Its slot stays taken until the thread ends: the bound counts the
        threads running, and a request admitted meanwhile waits, held in
        admission, rather than for a thread (docs/resilience.md §10)."""
        running = self._admission.threads.submit(contextvars.copy_context().run, fn, msg)
        try:
            return await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            loop = asyncio.get_running_loop()
            if not running.done():  # the thread runs on: it frees the slot, not the task's finally
                running.add_done_callback(functools.partial(_free_slot, loop, self._admission, slot.copy()))
                slot.clear()
            if msg.message_id in self.producers.cancelled:  # the requester's cancel (not a lost connection)
                running.add_done_callback(functools.partial(_count_late, loop, self.producers))
            raise

    def _answer_at_once(self, conn: ClientConnection, msg: Message, fn: Handler) -> None:
        """``_answer`` for a handler that never waits, run by ``AtOnce``:
        nothing can cancel it, and it has finished when this returns; only a
        stream it returns gets a task."""
        scope = serving(msg)
        failure: BaseException | None = None
        try:
            result = result_of(fn(msg))
            streams = streams_answer(result)
        except asyncio.CancelledError:  # raised by the handler itself: nothing of ours cancels it
            result, failure, streams = None, HandlerCancelled(msg.channel_id), False
        except Exception as exc:  # noqa: BLE001 - every failure is answered (§6.3)
            result, failure, streams = None, exc, False
        except BaseException as exc:  # GeneratorExit, a library's own: answered too
            if propagates(exc):
                raise
            result, failure, streams = None, exc, False
        if streams:
            slot = self._admission.run(self._stream, (conn, msg, result, scope))
            if slot:  # a cancel in this same read finds it (§15.4)
                self.producers.started(msg, slot)
            return
        if msg.window is not None:
            self.producers.forget(msg)
        scope.end(failure)
        self._reply(conn, msg, result, failure)

    def _unrun(self, msg: Message, slot: Slot) -> None:
        """A served request's task ends in its first step, its handler unrun."""
        self.producers.finished(msg)
        self._admission.finished(slot)

    def admitted(self, args: tuple[Any, ...], slot: Slot) -> None:
        """A served request held for a slot got its task (``Admission.started``):
        a cancel finds it from now on (§15.4)."""
        self.producers.started(args[1], slot)  # (conn, msg, fn): _answer's

    def dropped_unrun(self, args: tuple[Any, ...]) -> None:
        """A served request held for a handler slot was dropped unrun
        (``Admission``: its deadline passed, its connection went)."""
        self.producers.forget(args[1])  # (conn, msg, fn): _answer's

    async def _stream(self, slot: Slot, conn: ClientConnection, msg: Message, gen: Any, scope: Any) -> None:
        """Stream what a handler run at once returned (§15.6), in a task a
        cancel can find: one before its first step closes ``gen`` unstreamed (produce)."""
        failure: BaseException | None = None
        try:
            failure = await self.producers.produce(conn, msg, gen)
        except BaseException as exc:
            failure = _ended_by(exc)
            raise
        finally:
            scope.end(failure)  # also when a cancel stops it (docs/tracing.md §4)
            self.producers.finished(msg)
            self._admission.finished(slot)

    def _reply(self, conn: ClientConnection, msg: Message, result: Any, failure: BaseException | None) -> bool:
        """Write a served request's answer, unless nobody will read it; whether it was written."""
        if msg.message_type is not _REQUEST or conn is not self._admission.current() or not conn.is_open:
            return False
        if self.producers.given_up(msg):  # a cancel named it (§15.4)
            return False
        # An unsendable result is answered with its encoding error's own text, as it always was here.
        body, _ = handler_reply(msg, result, failure, legacy=conn.legacy, include_stack=self.expose_stacks, unsendable_prefix="")
        try:
            frame = conn.frame_body(body)
        except FrameTooLarge as exc:  # larger than the server accepts: say so instead
            body, _ = handler_reply(msg, None, exc, legacy=conn.legacy, include_stack=self.expose_stacks)
            frame = conn.frame_body(body)
        conn.write(frame)
        return True


def _free_slot(loop: asyncio.AbstractEventLoop, admission: Admission, slot: Slot, running: concurrent.futures.Future[Any]) -> None:
    """A cancelled handler's thread ended (in that thread): its slot is
    freed on the loop, and held work may start. After a disconnect the slot
    no longer counts (``Admission.clear``), so this frees nothing twice."""
    try:
        loop.call_soon_threadsafe(admission.finished, slot)
    except RuntimeError:  # the loop is closed: nothing is admitted any more
        pass


def _count_late(loop: asyncio.AbstractEventLoop, producers: Producers, running: concurrent.futures.Future[Any]) -> None:
    """A cancelled request's handler thread ended (in that thread): an
    answer or a failure it gave is one more late answer, counted on the
    loop. One that never started (cancelled while waiting for a thread) gave none."""
    if running.cancelled():
        return
    try:
        loop.call_soon_threadsafe(producers.count_late)
    except RuntimeError:  # the loop is closed: nobody reads the count any more
        pass


def _ended_by(exc: BaseException) -> BaseException:
    """What a serve span ends with when ``exc`` stopped its handler: a
    cancelled task (a cancel, the connection's loss) is ``cancelled``."""
    return Cancelled("cancelled by its requester") if isinstance(exc, asyncio.CancelledError) else exc
