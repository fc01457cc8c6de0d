"""The threads a client runs its plain served handlers and its plain
stream generators' ``next()`` in (README, docs/resilience.md §10), and
the server its plain in-process ones (``ipc_server.handlers``, unbounded
by admission there: ``HANDLER_THREADS``).

Not the loop's default executor: it has ``min(32, cpus + 4)`` threads (6
on two cores), shared with whatever else the program runs there, so 8
handlers at once that call the blocking methods back (a ``SyncIPCClient``
handler requesting a channel the same client serves) held every thread
while the inner requests waited for one, until their deadlines. Here a
running handler always has a thread: up to ``max_concurrent_handlers``,
the bound :class:`~ipc_client.admission.Admission` already puts on the
handlers running at once, created when none is idle (as a
``ThreadPoolExecutor`` does) and ended after ``IDLE_S`` idle.

Daemon threads, as :class:`~ipc_client.handler_thread.HandlerThread`'s:
a handler blocked for ever must not keep the process alive at exit, and
:meth:`HandlerThreads.stop` (the client's ``disconnect()``) never waits
for one; the threads it stops end once their handler returns.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["HandlerThreads", "IDLE_S"]

IDLE_S = 60.0  # an idle thread ends after this long: a burst's threads do not stay for ever

_Call = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]


class _Crew:
    """The threads of one :meth:`HandlerThreads.stop` period: how many,
    the idle ones (each waiting on its own hand-off queue), and the calls
    waiting for a thread. Changed under the owner's lock only."""

    __slots__ = ("size", "started", "idle", "waiting", "stopped")

    def __init__(self) -> None:
        self.size = 0
        self.started = 0
        self.idle: list[queue.SimpleQueue[_Call | None]] = []
        self.waiting: collections.deque[_Call] = collections.deque()
        self.stopped = False


class HandlerThreads:
    """Runs calls in daemon threads, at most ``max_threads`` at once
    (``math.inf``: no bound); more wait in order for a thread. Each call
    is handed to one thread, idle or new, so a call never waits while a
    thread could take it."""

    def __init__(self, name: str, max_threads: float) -> None:
        self.name = name
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self._crew = _Crew()

    def __len__(self) -> int:
        """Threads of the current crew, running or idle."""
        return self._crew.size

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """``fn(*args)`` in a thread; its future. Cancelling the future
        before a thread took it means it never runs."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        call: _Call = (fut, fn, args)
        with self._lock:
            crew = self._crew
            if crew.idle:
                crew.idle.pop().put(call)  # the most recently idle: the others may retire
            elif crew.size < self.max_threads:
                crew.size += 1
                crew.started += 1
                thread = threading.Thread(target=self._work, args=(crew, call), name=f"{self.name}_{crew.started}", daemon=True)
                thread.start()
            else:
                crew.waiting.append(call)
        return fut

    def stop(self) -> None:
        """Cancel the calls no thread took yet and end the threads, the
        busy ones once their call returns; never waits. Calls submitted
        later get new threads (a client may connect again)."""
        with self._lock:
            crew, self._crew = self._crew, _Crew()
            crew.stopped = True
            waiting, crew.waiting = crew.waiting, collections.deque()
            idle, crew.idle = crew.idle, []
        for fut, _fn, _args in waiting:
            fut.cancel()
        for handoff in idle:
            handoff.put(None)

    def _work(self, crew: _Crew, call: _Call | None) -> None:
        handoff: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        while call is not None:
            _run(call)
            call = None  # nothing of it stays alive while the thread idles
            call = self._next(crew, handoff)

    def _next(self, crew: _Crew, handoff: queue.SimpleQueue[_Call | None]) -> _Call | None:
        """The next call for a thread that is done with one, waiting idle
        for it; None when the thread ends (stopped, or idle ``IDLE_S``)."""
        with self._lock:
            if crew.stopped:
                crew.size -= 1
                return None
            if crew.waiting:
                return crew.waiting.popleft()
            crew.idle.append(handoff)
        try:
            return handoff.get(timeout=IDLE_S)
        except queue.Empty:
            with self._lock:
                if handoff in crew.idle:  # nobody handed it a call meanwhile
                    crew.idle.remove(handoff)
                    crew.size -= 1
                    return None
            return handoff.get()  # handed one just as it timed out: it is there


def _run(call: _Call) -> None:
    fut, fn, args = call
    if not fut.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the caller judges it (answering)
        fut.set_exception(exc)
    else:
        fut.set_result(result)
