"""An async iterator of the client's loop, read from other threads:
what :class:`~ipc_client.sync.SyncIPCClient`'s ``stream()`` and
``subscription()`` return (docs/resilience.md §10).

``next()`` blocks, so it refuses a running event loop as the client's
methods do (``RuntimeError``). A plain ``for`` has no hook on ``break``
either, so leaving one early closes the iterator only once it is
collected; ``with`` or :meth:`close` is the sure way. :meth:`close` may come from any thread, also while
another one waits in ``next()``: that one gets ``StopIteration``.

Closing the client ends an iterator as the async one ends on
``disconnect()``: before its loop stops, the client takes over what each
open iterator still held (:func:`settle_all`), and ``next()`` then gives
those items, then the end (``StopIteration``, or the stream's error).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast

from ipc_protocol import NotConnected

__all__ = ["BlockingIterator", "settle_all"]

log = logging.getLogger("ipc_client.sync")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_SETTLE_WAIT_S = 15.0  # longer than a close() may take (SyncIPCClient's stop timeouts)


class AsyncSource(Protocol[T_co]):
    """What the client's iterators (``Stream``, ``SubscriptionIterator``) offer."""

    def __anext__(self) -> Awaitable[T_co]: ...

    def aclose(self) -> Awaitable[None]: ...


class Runner(Protocol):
    """The blocking facade's way onto its loop (``SyncIPCClient``)."""

    _closed: bool  # close() was called
    _shut_down: threading.Event  # close() has finished: its loop is stopped

    def _check_blocking(self) -> None: ...

    def _submit(self, make: Callable[[], Awaitable[Any]]) -> concurrent.futures.Future[Any]: ...

    def _wait(self, fut: concurrent.futures.Future[Any]) -> Any: ...

    def _run(self, make: Callable[[], Awaitable[Any]]) -> Any: ...


class _Reading(Generic[T]):
    """The loop's side, kept apart from the iterator so that the finalizer
    of a dropped one can close it without referring to it."""

    def __init__(self, source: AsyncSource[T], start: Callable[[], Awaitable[Any]] | None) -> None:
        self.source = source
        self.start = start
        self.task: asyncio.Task[Any] | None = None  # the next() under way, on the loop
        self.started = False  # a next() or the start ran: the source may hold something
        self.finished = False  # the source ended (or raised): nothing more to take
        # What the client's close() took over (settle()); read once it finished.
        self.left: collections.deque[T] = collections.deque()
        self.end: BaseException | None = None  # the source's error after ``left``
        self.complete = False  # ``left`` and ``end`` are all the source had

    async def begin(self) -> None:
        self.started = True
        if self.start is not None:
            await self.start()

    async def next(self) -> tuple[bool, T | None]:
        self.started = True
        self.task = asyncio.current_task()
        try:
            return False, await self.source.__anext__()
        except StopAsyncIteration:  # as a value: an exception of that type may not leave a coroutine's task intact
            self.finished = True
            return True, None
        except BaseException:
            self.finished = True
            raise
        finally:
            self.task = None

    async def settle(self) -> None:
        """The client disconnected for good: take what the source still
        holds, and how it ends, before the loop stops. A next() under way
        finishes first, for the thread waiting in it. One never started
        holds nothing, and is left as it is."""
        if not self.started:
            return
        try:
            task = self.task
            if task is not None and not task.done():
                await asyncio.wait([task])
            while not self.finished:
                self.left.append(await self.source.__anext__())
            self.complete = True
        except StopAsyncIteration:
            self.complete = True
        except Exception as exc:  # noqa: BLE001 - the source's end, raised to the reader after its items
            self.end, self.complete = exc, True

    async def close(self) -> None:
        """Stop a next() under way first: an async generator cannot be
        closed while it runs."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        await self.source.aclose()


async def settle_all(iterators: Iterable[BlockingIterator[Any]], timeout: float) -> None:
    """What the client's close() runs on its loop once disconnected: every
    open iterator takes over its source's leftovers (bounded by ``timeout``;
    one not settled by then ends as before, with nothing kept)."""
    pending = [it._reading.settle() for it in iterators]
    if pending:
        try:
            await asyncio.wait_for(asyncio.gather(*pending), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            log.debug("SyncIPCClient.close(): iterators not settled within %.1f s", timeout)


def _dropped(loop: asyncio.AbstractEventLoop, reading: _Reading[Any]) -> None:
    """An iterator collected unclosed (a ``for`` left by ``break``): close
    it on its loop without waiting, from whatever thread collected it."""

    def close() -> None:
        loop.create_task(reading.close()).add_done_callback(_log_failure)

    try:
        loop.call_soon_threadsafe(close)
    except RuntimeError:  # the client was closed: its loop ended everything
        pass


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("closing a dropped iterator failed", exc_info=exc)


class BlockingIterator(Iterator[T]):
    """``for item in it`` blocks for each item; ``with it:`` (which for a
    subscription returns once the server acknowledged it) or ``close()``
    ends it at once, with its ``cancel`` or its ``unsubscribe``."""

    def __init__(
        self,
        runner: Runner,
        loop: asyncio.AbstractEventLoop,
        source: AsyncSource[T],
        start: Callable[[], Awaitable[Any]] | None = None,
        *,
        ends_with_client: bool = False,
    ) -> None:
        self._runner = runner
        self._ends_with_client = ends_with_client  # a subscription's loop just ends when its client closes, as the async one does
        self._reading = _Reading(source, start)
        self._next_lock = threading.Lock()  # one next() at a time, as an async iterator takes them
        self._done = False
        self._closed = False
        self._finalizer = weakref.finalize(self, _dropped, loop, self._reading)
        self._finalizer.atexit = False

    @property
    def source(self) -> AsyncSource[T]:
        """The client's async iterator underneath (use it only on its loop)."""
        return self._reading.source

    def __iter__(self) -> BlockingIterator[T]:
        return self

    def __next__(self) -> T:
        # As every blocking call: on a running loop it would stall that loop,
        # and on the client's own (an async handler) wait for itself for ever.
        self._runner._check_blocking()
        with self._next_lock:
            if self._done:
                raise StopIteration
            try:
                fut = self._runner._submit(self._reading.next)
                result: tuple[bool, T | None] = self._runner._wait(fut)
            except concurrent.futures.CancelledError:
                if self._closed:  # close() from another thread stopped this wait
                    self._done = True
                    raise StopIteration from None
                raise
            except NotConnected as exc:
                if not self._runner._closed:  # from the source: the client disconnected, not closed
                    self._done = True
                    if self._ends_with_client:
                        raise StopIteration from None
                    raise
                closed = exc  # the client is closed, or closed under this call
            except BaseException:
                self._done = True  # the source ended with this error, or the wait was interrupted and cancelled it
                raise
            else:
                ended, item = result
                if ended:
                    self._done = True
                    raise StopIteration
                return cast(T, item)
            return self._left_over(closed)  # what close() took over, then the end

    def _left_over(self, closed: NotConnected) -> T:
        """next() once the client is closed: the items its close() took over,
        then the source's end; without them (never started, or not settled),
        a subscription ends and a stream raises ``closed``."""
        reading = self._reading
        if not self._runner._shut_down.wait(_SETTLE_WAIT_S):  # close() is still stopping the loop
            log.debug("a blocking iterator's client did not finish closing within %.0f s", _SETTLE_WAIT_S)
        elif not self._closed:
            if reading.left:
                return reading.left.popleft()
            if reading.complete:
                self._done = True
                if reading.end is not None:
                    raise reading.end
                raise StopIteration
        self._done = True
        if self._ends_with_client or self._closed:
            raise StopIteration from None
        raise closed

    def close(self) -> None:
        """Leave it: a stream is cancelled at its producer, a subscription
        withdrawn; what was still buffered is dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        self._done = True
        try:
            self._runner._run(self._reading.close)
        except NotConnected:
            pass  # the client is closed: its loop ended the stream or subscription with it

    def __enter__(self) -> BlockingIterator[T]:
        if self._reading.start is not None:
            try:
                self._runner._run(self._reading.begin)
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ended" if self._done else "open"
        return f"<BlockingIterator {state} {self._reading.source!r}>"
