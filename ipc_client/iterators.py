"""Subscriptions as async iterators, and the buffer they share with served
requests' (served_requests.py); README "Iterating over messages and
requests"; js-client/lib/iterators.js is the same in Node.

``client.subscription(pattern)`` and ``client.requests(pattern)`` are built
on ``subscribe()`` and ``serve()``, so the client restores them after a
reconnection like any subscription or registration. What arrives waits in a
bounded buffer (``max_buffered``) until the loop takes it, and a full buffer
meets a named policy, never unbounded memory:

- ``"drop_oldest"``: the oldest waiting item makes room. Each drop is counted
  (``dropped`` here, ``iterator_dropped`` in the client's metrics) and each
  overflow episode (first drop since the buffer was last empty) is reported
  once as an ``error`` event carrying a :class:`SlowConsumer`.
- ``"error"``: the iterator stops listening; the loop gets what was
  buffered, then :class:`SlowConsumer` is raised (``details``: channel,
  max_buffered).

Served requests are in served_requests.py. The loop ends when the client is closed for
good (``disconnect()``, or reconnection gave up), after what was buffered; it
ends raising :class:`Forbidden` (after what was buffered) when the server
withdraws its subscription or registration (docs/security.md §3.4).
Leaving the loop (``break``, an exception), ``aclose()`` or the end of an
``async with`` undoes the subscription or registration.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ipc_protocol import ConnectionLost, Message, NotConnected, SlowConsumer, validate_pattern

from .metrics import ClientMetrics

if TYPE_CHECKING:
    from types import TracebackType

    from .client import IPCClient

__all__ = ["SubscriptionIterator", "BufferedIterator", "IteratorHost", "OVERFLOW_POLICIES", "DEFAULT_MAX_BUFFERED"]

log = logging.getLogger("ipc_client")

OVERFLOW_POLICIES = ("drop_oldest", "error")
DEFAULT_MAX_BUFFERED = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class IteratorHost:
    """What an iterator uses of its client besides the public API."""

    client: IPCClient
    metrics: ClientMetrics
    emit: Callable[..., None]
    current: Callable[[], object]  # the connection now, None while there is none
    until_closed: Callable[[], Awaitable[None]]  # returns once the client is closed for good
    watch: Callable[[Callable[[bool, str, BaseException], None]], Callable[[], None]]  # withdrawals by the server; returns the undo


class BufferedIterator(Generic[T]):
    """The buffer, its policy and the loop's end, shared by both iterators."""

    def __init__(self, host: IteratorHost, channel: str, max_buffered: int, overflow: str) -> None:
        validate_pattern(channel)
        if isinstance(max_buffered, bool) or not isinstance(max_buffered, int) or max_buffered < 1:
            raise ValueError(f"max_buffered must be an integer >= 1, got {max_buffered!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {overflow!r}")
        self._host = host
        self.channel = channel
        self.max_buffered = max_buffered
        self.overflow = overflow
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._ended = False  # nothing more is buffered; the loop ends once it is empty
        self._closed = False  # aclose() was called
        self._started = False
        self._registered = False
        self._overflowing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._unwatch: Callable[[], None] | None = None

    @property
    def buffered(self) -> int:
        """Items waiting for the loop."""
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the loop's side ------------------------------------------------------

    async def start(self) -> None:
        """Register with the server (once); the first ``__anext__`` or ``async with`` does it."""
        if self._started or self._closed:
            return
        self._started = True
        self._unwatch = self._host.watch(self._withdrawn)
        try:
            await self._register()
        except BaseException:
            self._ended = True
            self._stop_watching()
            raise
        if self._closed:  # aclose() came during the registration
            await self._unregister()
            return
        self._spawn(self._watch())

    def __aiter__(self) -> AsyncIterator[T]:
        return self._loop()

    async def _loop(self) -> AsyncIterator[T]:
        """What ``async for`` runs: leaving the loop (``break``, an exception)
        closes the iterator, as Node's ``for await`` does. An async generator,
        so the event loop closes it as soon as the loop lets go of it."""
        try:
            while True:
                try:
                    item = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await self.aclose()

    async def __anext__(self) -> T:
        if not self._started:
            await self.start()
            if self._closed:
                raise StopAsyncIteration
        items = self._items
        while True:
            if items:
                item = items.popleft()
                if not items:
                    self._overflowing = False  # caught up: the next drop is a new episode
                if self._accept(item):
                    return item
                continue
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            if self._ended:
                raise StopAsyncIteration
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    async def aclose(self) -> None:
        """End the loop and undo the registration; what is still buffered is discarded."""
        if self._closed:
            return
        self._closed = self._ended = True
        self._failure = None
        leftovers = list(self._items)
        self._items.clear()
        self._finish(leftovers)
        self._wake()
        for task in self._tasks:
            task.cancel()
        if self._started:
            await self._unregister()

    async def __aenter__(self) -> BufferedIterator[T]:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    # -- the client's side ------------------------------------------------------

    def _offer(self, item: T) -> None:
        """An item arrives: buffered, or the policy decides (runs for every message)."""
        if self._ended:
            self._refuse(item, overflow=False)
            return
        items = self._items
        if len(items) >= self.max_buffered:
            if self.overflow == "error":
                self._refuse(item, overflow=True)
                self._end(SlowConsumer(f"more than {self.max_buffered} items waited for the loop on {self.channel!r}", details=self._details()))
                self._spawn(self._unregister())
                return
            self._drop(items.popleft())
        items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _drop(self, item: T) -> None:
        """drop_oldest: count it, and report the first drop of an overflow episode."""
        self.dropped += 1
        self._host.metrics.iterator_dropped += 1
        self._refuse(item, overflow=True)
        if not self._overflowing:
            self._overflowing = True
            details = {**self._details(), "dropped": self.dropped}
            self._host.emit("error", SlowConsumer(f"the loop on {self.channel!r} fell {self.max_buffered} items behind: dropping the oldest", details=details))

    def _details(self) -> dict[str, Any]:
        return {"channel": self.channel, "max_buffered": self.max_buffered, "overflow": self.overflow}

    def _end(self, failure: BaseException | None = None) -> None:
        self._ended = True
        if failure is not None and self._failure is None:
            self._failure = failure
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _watch(self) -> None:
        """The client closed for good: the loop ends once the buffer is empty,
        and the registration is dropped so a later ``connect()`` does not restore it."""
        await self._host.until_closed()
        self._end()
        await self._unregister()

    def _withdrawn(self, serve: bool, channel: str, error: BaseException) -> None:
        """The server withdrew a registration (docs/security.md §3.4): if it
        is this one, the client dropped it; the loop ends with ``error``
        (Forbidden) after what was buffered."""
        if serve is not self._serves or channel != self.channel or not self._registered:
            return
        self._registered = False  # nothing to undo: the server and the client hold none of it
        self._stop_watching()
        self._end(error)

    def _stop_watching(self) -> None:
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()

    def _spawn(self, aw: Awaitable[None]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unregister(self) -> None:
        self._stop_watching()
        if not self._registered:
            return
        self._registered = False
        try:
            await self._withdraw()
        except (ConnectionLost, NotConnected):
            pass  # the server forgot it with the connection

    # -- what each iterator does ----------------------------------------------------

    _serves = False  # a responder registration (requests()), not a subscription

    async def _register(self) -> None:
        raise NotImplementedError

    async def _withdraw(self) -> None:
        raise NotImplementedError

    def _accept(self, item: T) -> bool:
        """Whether the loop gets ``item`` (a request may no longer be answerable)."""
        return True

    def _refuse(self, item: T, *, overflow: bool) -> None:
        """``item`` does not reach the loop: dropped by the policy, or arrived after the end."""

    def _finish(self, leftovers: list[T]) -> None:
        """The loop ended with ``leftovers`` still buffered."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ended" if self._ended else "open" if self._started else "new"
        return f"<{type(self).__name__} {self.channel!r} {state} buffered={len(self._items)}/{self.max_buffered} dropped={self.dropped}>"


class SubscriptionIterator(BufferedIterator[Message]):
    """``async for msg in client.subscription(pattern)``: the publishes matching ``pattern``."""

    async def _register(self) -> None:
        self._registered = True
        try:
            await self._host.client.subscribe(self.channel, self._offer)
        except BaseException:
            self._registered = False
            await self._host.client.unsubscribe(self.channel, self._offer)  # local only: nothing was registered
            raise

    async def _withdraw(self) -> None:
        await self._host.client.unsubscribe(self.channel, self._offer)

    async def unsubscribe(self) -> None:
        """The same as :meth:`aclose`."""
        await self.aclose()
