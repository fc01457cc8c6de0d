"""In-process handlers that stream (docs/protocol.md §15.6): the server's
own producers, a mixin of :class:`~ipc_server.streams.Streams`.

A stream request that goes to an in-process handler is known from the
moment it is routed (:meth:`LocalProducers.expect`), before its handler
has returned the generator, so a ``credit`` sent right behind the request
counts, and one past 2^31-1 fails the stream ``bad_message``, as for a
relayed stream. :meth:`LocalProducers.produce` then runs the generator
inside the handler call (``handlers``), so the call's deadline,
cancellation and shutdown apply as to any handler; ``async def`` ones on
the loop, plain ones one ``next()`` at a time in the worker threads. Each
pulls an item only while credit remains, and:

- while its consumer's connection is backed up (§12.2: the transport holds
  its high-water mark and frames wait in a backlog) it waits for the
  backlog to drain, so a large window never grows what the server holds
  for a consumer that reads slowly; that is the consumer's turn, as when
  it holds back credit, so the idle clock stops meanwhile (§15.5). For a
  consumer on another node, it waits while the cluster link is backed up
  (``cluster.stream_relay``), never running into the link's bound;
- it lets the loop run other work after ``SLICE_ITEMS`` items in a row or
  ``SLICE_S`` seconds, so a generator that never waits does not hold up the
  other connections (nor the flush of its own items).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import types
from typing import TYPE_CHECKING, Any

from ipc_client.at_once import propagates
from ipc_protocol import ErrorCode, IPCError, Message, MessageType
from ipc_protocol.envelope import encode_message_parts
from ipc_protocol.framing import frame_parts
from ipc_protocol.messages import error_response
from ipc_protocol.streams import SLICE_ITEMS, SLICE_S, stream_end, stream_item

from .connection import ServerConnection
from .stream_state import StreamState

if TYPE_CHECKING:
    from ipc_protocol.deadlines import Deadlines

    from .handlers import HandlerCall, HandlerCalls
    from .stats import ServerStats

__all__ = ["LocalProducers", "STREAM_RESULTS", "send_item"]

log = logging.getLogger("ipc_server")

# What a handler returns when it streams (§15.6).
STREAM_RESULTS = frozenset({types.AsyncGeneratorType, types.GeneratorType})
_END = object()  # next()'s default: the sync generator is exhausted


class LocalProducers:
    """In-process streams, by (consumer, its request id) in ``_local``."""

    if TYPE_CHECKING:  # what Streams holds
        _stats: ServerStats
        _calls: HandlerCalls
        _local: dict[tuple[ServerConnection, str], StreamState]
        _idle: Deadlines[StreamState]

        def _idle_of(self, msg: Message) -> float | None: ...
        def _watch(self, state: StreamState) -> None: ...
        def _now(self) -> float: ...

    def expect(self, call: HandlerCall) -> None:
        """A stream request is routed to an in-process handler (``handlers``):
        its credit is counted from now on, whatever the handler returns."""
        msg = call.request
        state = StreamState(msg.window, self._idle_of(msg), self._now())  # type: ignore[arg-type]
        state.call = call
        self._local[(call.conn, msg.message_id)] = state

    def forget(self, call: HandlerCall) -> None:
        """``call`` has ended: its stream's books, if it still has them, go."""
        key = (call.conn, call.request.message_id)
        state = self._local.get(key)
        if state is not None and state.call is call:
            del self._local[key]

    async def produce(self, call: HandlerCall, gen: Any) -> None:
        """Run a generator a handler returned, answering ``call``'s stream.
        Runs in the call's task: its deadline and cancellation apply. A call
        settled before (a plain handler's thread made the generator while a
        cancel came: ``HandlerCalls.cancel`` leaves that task running) only
        closes it."""
        msg = call.request
        is_async = gen.__class__ is types.AsyncGeneratorType
        if call.answered or call.stopping:  # a cancel (deadline, shutdown) came while a thread made it: never streams
            await _close(gen, is_async, None)
            return
        if msg.window is None or msg.message_type is not MessageType.REQUEST:
            await _close(gen, is_async, None)
            text = f"the handler of {msg.channel_id!r} streams its answer: call stream()"
            call.answer(error_response(msg, ErrorCode.BAD_REQUEST, text))
            return
        loop = self._calls.loop
        conn = call.conn
        key = (conn, msg.message_id)
        state = self._local.get(key)
        if state is None or state.call is not call:  # not expected (a caller of produce() of its own)
            self.expect(call)
            state = self._local[key]
        state.last = loop.time()  # its idle clock starts with the stream
        self._watch(state)
        self._stats.streams_opened += 1
        self._stats.streams += 1
        running: concurrent.futures.Future[Any] | None = None  # a sync generator's next() in a thread
        local = conn.__class__ is ServerConnection
        remote = not local and hasattr(conn, "drained")  # a consumer on another node: the cluster's stand-in (send_item)
        run, slice_ends = 0, loop.time() + SLICE_S  # items sent since the loop last ran other work
        try:
            while True:
                if state.credit.available == 0:
                    while state.credit.available == 0:
                        state.waiter = loop.create_future()
                        await state.waiter
                    run, slice_ends = 0, loop.time() + SLICE_S
                if is_async:
                    try:
                        item = await gen.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    running = self._calls.threads.submit(next, gen, _END)
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
                send_item(conn, frame)
                self._stats.stream_items += 1
                state.last = now = loop.time()
                run += 1
                # Never add to a backlog, never hold the loop for long, whatever the window (§12.2).
                if local and conn._backlog is not None or remote and conn.backed_up:  # local: backed_up without a property call per item
                    await _drained(conn, state, loop)
                elif run < SLICE_ITEMS and now < slice_ends:
                    continue
                else:
                    await asyncio.sleep(0)
                if not conn.is_open:  # closed meanwhile (a slow consumer cut): nobody reads an answer
                    return
                run, slice_ends = 0, loop.time() + SLICE_S
            call.answer(stream_end(msg))
        except asyncio.CancelledError:
            raise  # its task's _cancelled answers it, unless what cancelled it did
        except Exception as exc:  # noqa: BLE001 - every failure ends the stream with an error (§15.3)
            self._calls.fail(call, exc)
        except BaseException as exc:  # GeneratorExit, a library's own: answered too
            if propagates(exc):
                raise
            self._calls.fail(call, exc)
        finally:
            self.forget(call)
            self._idle.discard(state)
            self._stats.streams -= 1
            await _close(gen, is_async, running)

    def _expire_local(self, state: StreamState, code: ErrorCode, text: str) -> None:
        """End an in-process stream with an error of the server's; stop its handler."""
        call = state.call
        assert call is not None
        self._stats.count_error(code)
        call.answer(error_response(call.request, code, text))
        self._calls.stop(call)


async def _drained(conn: ServerConnection, state: StreamState, loop: asyncio.AbstractEventLoop) -> None:
    """Wait while ``conn`` is backed up: the consumer's turn, as when it
    holds back credit, so the idle clock stops (§15.5) and starts again after."""
    state.paused = True
    try:
        while conn.backed_up and conn.is_open:
            # Shared by every producer on the connection: shielded, so that one
            # cancelled (its consumer's cancel, its deadline) never cancels it for the rest.
            await asyncio.shield(conn.drained())
    finally:
        state.paused = False
    state.last = loop.time()



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


def send_item(conn: Any, frame: Any) -> None:
    """An item to its consumer. A consumer on another node is the cluster's
    stand-in (``cluster.incoming.RemoteRequester``): it sends items apart
    from the request's one answer (docs/cluster.md §3, Streams)."""
    if conn.__class__ is not ServerConnection and (send := getattr(conn, "send_item", None)) is not None:
        send(frame)
    else:
        conn.send_frame(frame)
