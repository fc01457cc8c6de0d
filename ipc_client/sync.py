"""A blocking facade over :class:`IPCClient` (docs/resilience.md §10).

For scripts and threaded programs without an event loop: the client runs
on a loop in a daemon background thread and each method blocks until its
coroutine ends there. Subscription handlers and event callbacks run in one
worker thread, in arrival order, so they may call the blocking methods
themselves without stalling the loop; whatever one raises is logged and
emitted as ``error``, and the thread goes on (``handler_thread``); ``async`` ones run on the client's
loop, as :class:`IPCClient` runs them. A client dropped without
:meth:`~SyncIPCClient.close` closes itself when collected: nothing the loop
holds refers back to it. The loop thread's life is in ``sync_loop``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ipc_protocol import Message, NotConnected, RequestTimeout

from .blocking_iterators import BlockingIterator, settle_all
from .client import IPCClient
from .handler_thread import HandlerThread, Report, in_worker
from .state import ConnectionState
from .sync_loop import abandoned, check_blocking, run_loop, shutdown_client

__all__ = ["SyncIPCClient"]

log = logging.getLogger("ipc_client.sync")

T = TypeVar("T")
SyncHandler = Callable[[Message], Any]

_STOP_TIMEOUT_S = 5.0  # close() waits this long for the disconnect, then for the thread
_SETTLE_TIMEOUT_S = 2.0  # of that, at most this long for its iterators to take over what they held


class SyncIPCClient:
    """:class:`IPCClient` with blocking methods; same arguments.

    Calling a blocking method from inside a running event loop raises
    RuntimeError: it would block that loop (use :class:`IPCClient` there).
    """

    def __init__(self, app_id: str, host: str = "localhost", port: int = 8888, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._ended: concurrent.futures.Future[None] = concurrent.futures.Future()  # the loop thread is gone
        self._thread = threading.Thread(target=run_loop, args=(self._loop, self._ended), name=f"ipc-client-{app_id}", daemon=True)
        self._thread.start()
        self._workers = HandlerThread(f"ipc-client-handlers-{app_id}")
        # ``_closed`` and ``_pending`` change together under ``_lock``: a call
        # is either refused or submitted before close() stops the loop, and
        # close() fails whatever the stopped loop never finished.
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        self._shut_down = threading.Event()  # close() has finished (its iterators read what it left them)
        self._iterators: weakref.WeakSet[BlockingIterator[Any]] = weakref.WeakSet()

        async def make() -> IPCClient:  # on the loop's thread: a queue file opened there stays there
            return IPCClient(app_id, host, port, **options)

        try:
            self._client: IPCClient = asyncio.run_coroutine_threadsafe(make(), self._loop).result()
        except BaseException:
            self._stop_loop()
            raise
        # Holds no reference to self; nor may anything on the loop (see _in_worker).
        self._finalizer = weakref.finalize(self, abandoned, self._loop, self._client, self._workers, _STOP_TIMEOUT_S)
        self._finalizer.atexit = False  # at exit the daemon thread just ends, as before

    # -- plumbing -------------------------------------------------------------

    _check_blocking = staticmethod(check_blocking)

    def _submit(self, make: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start ``make()`` on the loop unless the client is closed (checked
        under the lock close() takes before it stops the loop)."""

        async def run() -> T:
            return await make()

        with self._lock:
            if self._closed:
                raise NotConnected("the client is closed")
            fut = asyncio.run_coroutine_threadsafe(run(), self._loop)
            self._pending.add(fut)
        return fut

    def _wait(self, fut: concurrent.futures.Future[T]) -> T:
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            if self._closed:  # cancelled by close() stopping the loop's tasks
                raise NotConnected("the client was closed during the call") from None
            raise
        except BaseException:
            fut.cancel()  # interrupted (Ctrl-C): do not leave the call running
            raise
        finally:
            with self._lock:
                self._pending.discard(fut)

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the client's loop and wait for its result."""
        self._check_blocking()
        return self._wait(self._submit(make))

    def _read(self, fn: Callable[[], T]) -> T:
        """Call a non-blocking client method on the loop's thread."""

        async def read() -> T:
            return fn()

        return self._run(read)

    def _in_worker(self, fn: Callable[..., Any], *, reported: bool = True) -> Callable[..., Any]:
        """``fn`` as the client calls it (handler_thread.in_worker); a failure is
        emitted as ``error`` when ``reported`` (not an ``error`` callback's)."""
        report: Report | None = functools.partial(self._client._emit, "error") if reported else None
        return in_worker(fn, self._workers, self._loop, report)

    # -- connection -------------------------------------------------------------

    @property
    def client(self) -> IPCClient:
        """The asyncio client underneath (use it only on its own loop)."""
        return self._client

    @property
    def state(self) -> ConnectionState:
        return self._client.state

    @property
    def connected(self) -> bool:
        return self._client.connected

    def connect(self) -> bool:
        return self._run(self._client.connect)

    def disconnect(self) -> None:
        self._run(self._client.disconnect)

    def close(self) -> None:
        """Disconnect and stop the background thread; later calls raise NotConnected.

        Calls that other threads are blocked in end too: with the
        connection's error if it closes under them, else with NotConnected.
        Its iterators end as :class:`IPCClient`'s do on ``disconnect()``:
        after the items they held (taken over before the loop stops).
        """
        if self._closed:
            return
        self._check_blocking()
        with self._lock:
            if self._closed:
                return
            # From here no call is submitted; the shutdown below is the last.
            self._closed = True
            self._finalizer.detach()
            shutdown = self._start_shutdown([it for it in self._iterators if not it._done])
        try:
            if shutdown is not None:
                self._await_shutdown(shutdown)
        finally:
            self._stop_loop()
            self._workers.shutdown()
            with self._lock:
                leftovers, self._pending = self._pending, set()
            for fut in leftovers:
                if not fut.done():
                    try:
                        fut.set_exception(NotConnected("the client was closed before the call ran"))
                    except concurrent.futures.InvalidStateError:
                        pass  # it finished meanwhile (the loop outlived the stop timeout)
            self._shut_down.set()

    def _start_shutdown(self, iterators: list[BlockingIterator[Any]]) -> concurrent.futures.Future[None] | None:
        """The disconnect on the loop, then the open ``iterators`` take over
        what they held; None if its thread is gone (nothing there runs)."""
        if self._ended.done():
            return None
        coro = shutdown_client(self._client, functools.partial(settle_all, iterators, _SETTLE_TIMEOUT_S))
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # closed just now
            coro.close()
            return None

    def _await_shutdown(self, shutdown: concurrent.futures.Future[None]) -> None:
        """Wait for the disconnect, raising what it raised, until the loop
        thread ends or a blocked loop has had ``_STOP_TIMEOUT_S``."""
        concurrent.futures.wait([shutdown, self._ended], _STOP_TIMEOUT_S, concurrent.futures.FIRST_COMPLETED)
        if shutdown.done():
            shutdown.result()
        elif not self._ended.done():
            log.warning("SyncIPCClient.close(): the client's loop did not shut down within %.0f s (blocked?); leaving it", _STOP_TIMEOUT_S)

    def _stop_loop(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except RuntimeError:  # the thread closed it on its way out
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(_STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()  # closed by its thread already; closing twice is fine

    def __enter__(self) -> SyncIPCClient:
        """Connect; a failed connect closes the client before raising, since
        ``__exit__`` never runs then (its loop thread and sockets would leak)."""
        self._check_blocking()
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``callback`` for a client event; it runs in the worker
        thread (an ``async`` one on the client's loop)."""
        self._read(lambda: self._client.on(event, self._in_worker(callback, reported=event != "error")))
        return callback

    # -- calls --------------------------------------------------------------------

    def send_request(self, channel: str, payload: Any = None, **kwargs: Any) -> Message:
        return self._run(lambda: self._client.send_request(channel, payload, **kwargs))

    def request(self, channel: str, payload: Any = None, **kwargs: Any) -> Any:
        return self._run(lambda: self._client.request(channel, payload, **kwargs))

    def publish(self, channel: str, data: Any = None, **kwargs: Any) -> int | None:
        return self._run(lambda: self._client.publish(channel, data, **kwargs))

    def notify(self, channel: str, data: Any = None, **kwargs: Any) -> None:
        self._run(lambda: self._client.notify(channel, data, **kwargs))

    def subscribe(self, channel: str, handler: SyncHandler) -> None:
        """Call ``handler(message)`` in the worker thread for every matching
        publish; an ``async`` handler runs on the client's loop instead, as
        with :class:`IPCClient` (a coroutine nobody awaited would never run).
        As there, a handler is held once per pattern and called once per
        message: its wrappers compare as the handler does (``InWorker``)."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        wrapper = self._in_worker(handler)
        self._run(lambda: self._client.subscribe(channel, wrapper))

    def unsubscribe(self, channel: str, handler: SyncHandler | None = None) -> None:
        held = self._in_worker(handler) if handler is not None and callable(handler) else handler  # equal to the one subscribed
        self._run(lambda: self._client.unsubscribe(channel, held))

    def serve(self, channel: str, fn: SyncHandler) -> None:
        """Answer requests on ``channel`` with ``fn(message)`` (run in a worker thread).

        Returns once the server registered it when connected; before
        :meth:`connect`, it is registered at connection time.
        """

        async def register() -> None:
            registration = self._client.serve(channel, fn)
            if self._client.connected:
                try:
                    await asyncio.wait_for(registration.wait(), self._client.request_timeout)
                except (asyncio.TimeoutError, TimeoutError):
                    raise RequestTimeout(f"the server did not register {channel!r} in time") from None

        self._run(register)

    def unserve(self, channel: str) -> None:
        self._run(lambda: self._client.unserve(channel))

    def stream(self, channel: str, payload: Any = None, **kwargs: Any) -> BlockingIterator[Any]:
        """The items a streaming handler yields, as :meth:`IPCClient.stream`
        (same options), each ``next()`` blocking for one::

            with client.stream("ticks", {"symbol": "ACME"}, timeout=60) as ticks:
                for item in ticks:
                    ...

        Leaving the ``with`` or ``close()`` cancels the stream at once; a
        ``for`` left early, once the iterator is collected."""
        return self._iterator(BlockingIterator(self, self._loop, self._read(lambda: self._client.stream(channel, payload, **kwargs))))

    def subscription(self, channel: str, **kwargs: Any) -> BlockingIterator[Message]:
        """The publishes matching ``channel`` as a blocking iterator, as
        :meth:`IPCClient.subscription` (same options); ``with`` returns once
        the server acknowledged it, leaving it unsubscribes."""
        source = self._read(lambda: self._client.subscription(channel, **kwargs))
        return self._iterator(BlockingIterator(self, self._loop, source, source.start, ends_with_client=True))

    def _iterator(self, it: BlockingIterator[T]) -> BlockingIterator[T]:
        """Known to close(), which hands it what it held (weakly: a dropped one closes itself)."""
        with self._lock:
            self._iterators.add(it)
        return it

    def system(self, action: str, timeout: float | None = None, *, params: dict[str, Any] | None = None) -> Any:
        return self._run(lambda: self._client.system(action, timeout, params=params))

    def drain(self, timeout: float | None = None) -> bool:
        """Finish what is in flight, then disconnect (docs/resilience.md §12)."""
        return self._run(lambda: self._client.drain() if timeout is None else self._client.drain(timeout))

    # -- introspection --------------------------------------------------------------

    def health_check(self, timeout: float = 5.0) -> bool:
        return self._run(lambda: self._client.health_check(timeout))

    def health(self, timeout: float = 5.0) -> dict[str, Any]:
        return self._run(lambda: self._client.health(timeout))

    def metrics(self) -> dict[str, Any]:
        return self._read(self._client.metrics)

    def get_connection_health(self) -> dict[str, Any]:
        return self._read(self._client.get_connection_health)

    def get_connection_info(self) -> dict[str, Any]:
        return self._read(self._client.get_connection_info)

    def queue_stats(self) -> dict[str, Any]:
        return self._read(self._client.queue_stats)

    def circuit_breakers(self) -> dict[str, dict[str, Any]]:
        return self._read(self._client.circuit_breakers)

    def __repr__(self) -> str:
        return f"<SyncIPCClient {self._client!r}{' closed' if self._closed else ''}>"
