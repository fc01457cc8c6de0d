"""Inbound handler admission: at most ``max_concurrent_handlers`` served
requests and async subscription handlers run at once; more wait, in arrival
order, and a held request whose deadline passes is dropped unrun.

The socket is never paused for them: responses to this client's own requests
must keep flowing, or a handler that makes a request could wait on itself.
So what waits is bounded here instead (``max_held_messages``): past it a new
arrival is not held. A request is answered ``limit_exceeded`` at once, so its
requester gets an error, not a silent timeout; a publish is dropped, counted
(``held_dropped``) and reported once per overflow episode as a
``SlowConsumer`` on ``error``, the episode ending when the held count is back
to half the bound (as the iterators report ``max_buffered`` overflows).
For the same reason plain (sync) served handlers and stream generators run
in the client's own threads (``handler_threads``), as many as the handlers
admitted, never in the loop's small default executor.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from ipc_protocol import ErrorCode, Message, SlowConsumer
from ipc_protocol.envelope import REQUEST as _REQUEST
from ipc_protocol.messages import error_response

from .at_once import AtOnce
from .connection import ClientConnection
from .handler_threads import HandlerThreads
from .metrics import ClientMetrics

__all__ = ["Admission", "HandlerWork", "Slot", "DEFAULT_MAX_HELD_MESSAGES"]

# The most inbound messages held for a handler slot (max_held_messages): NATS
# clients bound a subscription's pending messages alike (nats.go 500k, nats-py 512k).
DEFAULT_MAX_HELD_MESSAGES = 65536

# A handler task's one-item list holding itself: the work frees its slot with
# it, as asyncio.current_task() is a system call on 3.11.
Slot = list[asyncio.Task[None]]
# Inbound work run in a handler task: called with its slot and arguments.
HandlerWork = Callable[..., Coroutine[Any, Any, None]]


class Admission:
    """Handler task slots and the work held for one.

    ``current`` returns the client's connection now: a served request whose
    connection is gone is not run (held) or not answered (done), since the
    server has already answered it.
    ``loop`` is set by ``connect()``; ``at_once`` with it, for handlers that
    never wait and need no task on 3.11 (``at_once``)."""

    def __init__(
        self,
        max_concurrent: int,
        current: Callable[[], ClientConnection | None],
        name: str = "ipc-client",
        *,
        max_held: float = DEFAULT_MAX_HELD_MESSAGES,
        metrics: ClientMetrics | None = None,
        emit: Callable[..., None] | None = None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_held = max_held  # an int, or math.inf
        self.metrics = metrics if metrics is not None else ClientMetrics()
        self.emit = emit
        self._overflowing = False  # a dropped publish was reported: till held falls to half the bound
        # What plain handlers run in: a thread for each handler admitted.
        self.threads = HandlerThreads(f"{name}-handler", max_concurrent)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.at_once: AtOnce = None  # type: ignore[assignment]  # with the loop
        self.current = current
        # Running served requests and async subscription handlers; their
        # number is what max_concurrent limits.
        self.tasks: set[asyncio.Task[Any]] = set()
        self.held: collections.deque[tuple[ClientConnection | None, HandlerWork, tuple[Any, ...], float | None]] = collections.deque()
        # Told of a served request's work dropped unrun, with its arguments (answering).
        self.dropped: Callable[[tuple[Any, ...]], None] | None = None
        # Told of a served request's task as it is created, with its arguments
        # and slot (answering): a cancel finds it from then on, not from its first step.
        self.started: Callable[[tuple[Any, ...], Slot], None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            self._loop = loop
            self.at_once = AtOnce(loop)

    def admit(self, conn: ClientConnection | None, work: HandlerWork, args: tuple[Any, ...], expires: float | None = None) -> None:
        """Run ``work(slot, *args)`` now, or hold it while every slot is busy.

        ``conn`` is set for served requests: one whose connection is gone, or
        whose deadline (``expires``, loop time) passed while held, is dropped."""
        if len(self.tasks) < self.max_concurrent and not self.held:
            self._start(conn, work, args)
            return
        if len(self.held) >= self.max_held:
            self.refuse(args)
            return
        self.held.append((conn, work, args, expires))

    def hold_publish(self, msg: Message, work: HandlerWork, args: tuple[Any, ...], awaitable: Any = None) -> None:
        """A publish waiting for a slot: held, or dropped past ``max_held``
        (``admit()``'s slow path for a publish, whose handlers are matched
        inline: Subscriptions)."""
        if len(self.held) < self.max_held:
            self.held.append((None, work, args, None))
        else:
            self.drop(msg, awaitable)

    def refuse(self, args: tuple[Any, ...]) -> None:
        """A served request or notification over ``max_held``, not held nor
        run: a request answered ``limit_exceeded`` (its arguments are
        ``(conn, msg, ...)``: answering's), a notification dropped as a publish."""
        conn: ClientConnection = args[0]
        msg: Message = args[1]
        if msg.message_type is not _REQUEST:
            self.drop(msg)
            return
        self.metrics.held_dropped += 1
        if self.dropped is not None:
            self.dropped(args)  # a stream request's books go
        if conn is self.current() and conn.is_open:
            text = f"the responder already holds {self.max_held} messages waiting for a handler slot"
            conn.send(error_response(msg, ErrorCode.LIMIT_EXCEEDED, text, details={"max_held_messages": self.max_held}))

    def drop(self, msg: Message, awaitable: Any = None) -> None:
        """A publish over ``max_held``: dropped, counted, and reported if it
        starts an overflow episode. ``awaitable``: what a plain handler returned."""
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never run: no "never awaited" warning
        metrics = self.metrics
        metrics.held_dropped += 1
        if self._overflowing:
            return
        self._overflowing = True
        if self.emit is not None:
            details = {"channel": msg.channel_id, "max_held_messages": self.max_held, "dropped": metrics.held_dropped}
            text = f"{self.max_held} inbound messages wait for a handler slot: dropping new ones, the first on {msg.channel_id!r}"
            self.emit("error", SlowConsumer(text, details=details))

    def run(self, work: HandlerWork, args: tuple[Any, ...]) -> Slot:
        """Start ``work(slot, *args)`` as a task; its slot, empty when an
        eager task factory ran it to its end already. The work calls
        :meth:`finished` with ``slot`` in its ``finally`` (a done callback
        would cost a loop callback more per request), so a task cancelled
        before its first step would keep its slot: only :meth:`clear` lets
        such tasks go, and a served request's cancel leaves the task to see
        it in its first step (producers)."""
        slot: Slot = []
        task = self.loop.create_task(work(slot, *args))  # type: ignore[union-attr]
        if not task.done():
            slot.append(task)
            self.tasks.add(task)
        return slot

    def _start(self, conn: ClientConnection | None, work: HandlerWork, args: tuple[Any, ...]) -> None:
        """``run()`` a served request's (``conn`` set) or a publish's work,
        telling ``started`` of the former."""
        slot = self.run(work, args)
        if conn is not None and slot and self.started is not None:
            self.started(args, slot)

    def finished(self, slot: Slot) -> None:
        """A handler task ends: free its slot and start held work."""
        if not slot or slot[0] not in self.tasks:
            return  # it never counted (eager start), or clear() already let it go
        self.tasks.discard(slot[0])
        if not self.held:
            self._overflow_ends()
            return
        now = self.loop.time()  # type: ignore[union-attr]
        current = self.current()
        while self.held and len(self.tasks) < self.max_concurrent:
            conn, work, args, expires = self.held.popleft()
            if conn is not None and (conn is not current or (expires is not None and expires <= now)):
                if self.dropped is not None:
                    self.dropped(args)
                continue
            self._start(conn, work, args)
        self._overflow_ends()

    def _overflow_ends(self) -> None:
        """Back to half the bound: the next drop starts a new episode (reported)."""
        if self._overflowing and len(self.held) * 2 <= self.max_held:
            self._overflowing = False

    def lost(self, conn: ClientConnection) -> None:
        """``conn`` is gone: what was held from it (served requests and
        notifications) never runs, as the server already answered it, and
        stops counting against ``max_held``; held publishes stay (they were
        delivered: handled once a slot frees, whatever the connection)."""
        if not any(entry[0] is conn for entry in self.held):
            return
        kept: collections.deque[tuple[ClientConnection | None, HandlerWork, tuple[Any, ...], float | None]] = collections.deque()
        for entry in self.held:
            if entry[0] is not conn:
                kept.append(entry)
            elif self.dropped is not None:
                self.dropped(entry[2])
        self.held = kept
        self._overflow_ends()

    def drop_held(self, message_id: str) -> None:
        """A cancel named a served request still held for a slot: it never
        runs (its work's arguments are ``(conn, msg, ...)``: answering's)."""
        for i, (conn, _work, args, _expires) in enumerate(self.held):
            if conn is not None and args[1].message_id == message_id:
                del self.held[i]
                if self.dropped is not None:
                    self.dropped(args)
                return

    def clear(self) -> set[asyncio.Task[Any]]:
        """Drop the held work and let go of the running tasks, returned for
        the caller to cancel: they will not be counted again (a task cancelled
        before its first step never runs its ``finally``). The handler
        threads end, each once its handler returns (``disconnect()``)."""
        self.held.clear()
        self._overflowing = False
        self.threads.stop()
        tasks, self.tasks = self.tasks, set()
        return tasks
