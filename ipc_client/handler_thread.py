"""The one thread :class:`~ipc_client.sync.SyncIPCClient` runs its plain
handlers and event callbacks in, in arrival order, and the guard each runs
in (:func:`guarded`): whatever one raises is logged and reported, and the
thread goes on.

A daemon thread, unlike a ``ThreadPoolExecutor``'s (which the interpreter
joins at exit): a handler still blocked when the program ends (waiting for
a message that never comes) must not keep the process alive, as the
client's own loop thread does not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .at_once import is_async_function

__all__ = ["HandlerThread", "InWorker", "Report", "guarded", "in_worker"]

log = logging.getLogger("ipc_client.sync")

_STOP = object()
T = TypeVar("T")


class HandlerThread:
    """Calls submitted functions one at a time, on a daemon thread started
    at the first one."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; dropped once :meth:`shutdown` was called."""
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._calls.put((fn, args))

    def shutdown(self) -> None:
        """Stop after the calls already queued; never waits (the garbage
        collector may call it on any thread, this one's too)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._calls.put(_STOP)

    def _run(self) -> None:
        calls = self._calls
        while (call := calls.get()) is not _STOP:
            fn, args = call
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - the one thread must go on for every later call
                log.exception("a call in %s failed", self._name)
            del call, fn, args


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw


Report = Callable[[BaseException], None]


def guarded(loop: asyncio.AbstractEventLoop, report: Report | None, fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` in the worker thread, whatever it raises: the one
    thread must go on for every later message and event. A failure is
    logged and, through ``report``, emitted as ``error`` on the loop, as
    ``IPCClient`` reports its handlers'. ``BaseException`` too: in this
    thread ``SystemExit`` or ``KeyboardInterrupt`` could not end the
    program anyway (a thread's ``sys.exit()`` ends only the thread), and
    ``GeneratorExit`` or a library's own must not end the worker."""
    try:
        result = fn(*args)
        if result is not None and inspect.isawaitable(result):  # a plain function that returned a coroutine
            asyncio.run_coroutine_threadsafe(_awaited(result), loop).add_done_callback(functools.partial(_log_failure, loop, report, fn))
    except BaseException as exc:  # noqa: BLE001 - see above
        _failed(loop, report, fn, exc)


def _log_failure(loop: asyncio.AbstractEventLoop, report: Report | None, fn: Callable[..., Any], fut: concurrent.futures.Future[Any]) -> None:
    if not fut.cancelled() and (exc := fut.exception()) is not None:
        _failed(loop, report, fn, exc)


def _failed(loop: asyncio.AbstractEventLoop, report: Report | None, fn: Callable[..., Any], exc: BaseException) -> None:
    log.error("handler %r failed", fn, exc_info=exc)
    if report is not None:
        try:
            loop.call_soon_threadsafe(report, exc)
        except RuntimeError:  # the loop is closed: nobody listens any more
            pass


def in_worker(fn: Callable[..., Any], workers: HandlerThread, loop: asyncio.AbstractEventLoop, report: Report | None) -> Callable[..., Any]:
    """``fn`` as the client calls it: a plain function in the worker
    thread (:class:`InWorker`); an ``async`` one as is, so it runs on the
    client's loop as :class:`IPCClient` runs it. A failure is emitted as
    ``error`` through ``report`` (None for an ``error`` callback: it would
    report itself)."""
    if is_async_function(fn):
        return fn
    return InWorker(fn, workers, loop, report)


class InWorker:
    """A plain callback as the client holds it: called on the loop, it
    queues ``fn`` for the worker thread. Equal to any other wrapper of an
    equal ``fn``, and hashed as ``fn``: each subscribe() makes a new one,
    yet the client must see one handler, held once however often it is
    subscribed, called once per message whatever patterns match, removed
    by one unsubscribe(), as :class:`IPCClient` treats ``fn`` itself. The
    client's loop keeps it: it must not refer to the SyncIPCClient, or a
    dropped one is never collected."""

    __slots__ = ("fn", "_workers", "_loop", "_report")

    def __init__(self, fn: Callable[..., Any], workers: HandlerThread, loop: asyncio.AbstractEventLoop, report: Report | None) -> None:
        self.fn, self._workers, self._loop, self._report = fn, workers, loop, report

    def __call__(self, *args: Any) -> None:
        self._workers.submit(guarded, self._loop, self._report, self.fn, *args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InWorker) and bool(other.fn == self.fn)

    def __hash__(self) -> int:
        try:
            return hash(self.fn)
        except TypeError:  # a callable object with __eq__ and no __hash__ (a dataclass): equal to itself only
            return id(self.fn)

    def __repr__(self) -> str:
        return f"<in the worker thread: {self.fn!r}>"
